"""A protocol's report: per-run values, means with t intervals, paired comparisons, figures.

Files: ``runs.csv`` (one row per model and run, each metric with its bootstrap interval),
``summary.csv`` (per model and group: n, mean, t interval), ``comparisons.csv`` (every pair of
models on the same runs), ``report.md`` and the figures: the seed spread (each run a point over
the mean's bar, for every design), the few-shot curve and the leave-one-source-out heat map.

A group is what a run varies besides seed and fold: the held-out source (leave one source out)
or the shot budget (few-shot); seeds x folds has one group.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from drgrade.files import atomic_open, atomic_write_text, save_figure
from drgrade.protocols.spec import Protocol
from drgrade.protocols.statistics import paired_test, t_interval

#: The group name of in-source runs and of a protocol without groups.
ALL = "all"


def group_of(row: dict) -> str:
    """A run's group: its held-out source, its shot budget, or ``all``."""
    if row.get("shots") is not None:
        return f"{row['shots']} shots"
    if row.get("held_out"):
        return row["held_out"]
    return "in-source" if row["run"].startswith("in-source") else ALL


def write_csv(path: Path, rows: Sequence[dict]) -> Path:
    """Rows of dicts as a CSV (columns of the first row; empty cells for None)."""
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return path


def values(rows: Sequence[dict], model: str, group: str, metric: str) -> dict[str, float]:
    """{run: value} of one model and metric in one group (undefined values left out)."""
    return {
        r["run"]: float(r[metric])
        for r in rows
        if r["model"] == model and group_of(r) == group and r[metric] is not None
    }


def summarise(protocol: Protocol, rows: Sequence[dict]) -> list[dict]:
    """Per model, group and metric: n runs, mean and its t interval."""
    out = []
    for group in groups(rows):
        for model in protocol.models:
            for metric in protocol.metrics:
                found = values(rows, model, group, metric)
                if found:
                    out.append(
                        {"model": model, "group": group, "metric": metric, **t_interval(list(found.values()))}
                    )
    return out


def groups(rows: Sequence[dict]) -> list[str]:
    """The groups in run order."""
    return list(dict.fromkeys(group_of(r) for r in rows))


def test_train_ratio(protocol: Protocol, rows: Sequence[dict], group: str) -> float | None:
    """n_test / n_development of the group's k-fold runs (None: not k-fold; a plain paired t test)."""
    if protocol.design != "folds" or protocol.folds is None:
        return None
    picked = [r for r in rows if group_of(r) == group]
    return float(np.mean([r["n_test"] / (r["n_train"] + r["n_val"]) for r in picked]))


def compare(protocol: Protocol, rows: Sequence[dict]) -> list[dict]:
    """Every pair of models on the runs both have, per group and metric (``paired_test``)."""
    out = []
    for group in groups(rows):
        ratio = test_train_ratio(protocol, rows, group)
        for first, second in combinations(protocol.models, 2):
            for metric in protocol.metrics:
                a, b = values(rows, first, group, metric), values(rows, second, group, metric)
                shared = [run for run in a if run in b]
                if shared:
                    test = paired_test([a[r] for r in shared], [b[r] for r in shared], ratio)
                    out.append({"first": first, "second": second, "group": group, "metric": metric, **test})
    return out


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for the report (``-`` when undefined)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_cell(entry: dict | None) -> str:
    """``mean [low, high]`` (or the mean alone from one run)."""
    if entry is None:
        return "-"
    if entry["low"] is None:
        return f"{fmt(entry['mean'])} (1 run)"
    return f"{fmt(entry['mean'])} [{fmt(entry['low'])}, {fmt(entry['high'])}]"


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def summary_table(protocol: Protocol, summary: Sequence[dict]) -> str:
    """Rows: group and model; columns: each metric's mean and t interval."""
    index = {(s["group"], s["model"], s["metric"]): s for s in summary}
    body = []
    for group in dict.fromkeys(s["group"] for s in summary):
        for model in protocol.models:
            n = next((s["n"] for s in summary if s["group"] == group and s["model"] == model), 0)
            cells = [mean_cell(index.get((group, model, m))) for m in protocol.metrics]
            body.append([group, model, str(n), *cells])
    return markdown_table(["group", "model", "runs", *protocol.metrics], body)


def comparison_table(comparisons: Sequence[dict]) -> str:
    """One row per pair, group and metric: the mean difference, its interval, t, df, p and the test."""
    body = [
        [
            c["group"],
            f"{c['first']} - {c['second']}",
            c["metric"],
            f"{fmt(c['mean_difference'])} [{fmt(c['low'])}, {fmt(c['high'])}]",
            fmt(c["t"], 2),
            str(c["df"] or "-"),
            fmt(c["p"], 4),
            c["test"],
        ]
        for c in comparisons
    ]
    return markdown_table(["group", "difference", "metric", "mean [95% CI]", "t", "df", "p", "test"], body)


def external_table(protocol: Protocol, summary: Sequence[dict], metric: str) -> str:
    """Leave one source out: rows held-out source (and in-source), columns models, mean [interval]."""
    index = {(s["group"], s["model"]): s for s in summary if s["metric"] == metric}
    rows = ["in-source", *(g for g in dict.fromkeys(s["group"] for s in summary) if g != "in-source")]
    body = [
        [f"{g} (held out)" if g != "in-source" else "in-source (all sources)"]
        + [mean_cell(index.get((g, m))) for m in protocol.models]
        for g in rows
    ]
    return markdown_table([f"test source ({metric})", *protocol.models], body)


def spread_figure(protocol: Protocol, rows: Sequence[dict], summary: Sequence[dict], metric: str):
    """Each model's mean as a bar with its t interval, every run's value as a point over it, per group."""
    names = groups(rows)
    fig, ax = plt.subplots(
        figsize=(max(4.0, 1.2 * len(names) * len(protocol.models)), 3.6), constrained_layout=True
    )
    width = 0.8 / len(protocol.models)
    rng = np.random.default_rng(0)
    for j, model in enumerate(protocol.models):
        for i, group in enumerate(names):
            found = list(values(rows, model, group, metric).values())
            if not found:
                continue
            entry = t_interval(found)
            x = i + (j - (len(protocol.models) - 1) / 2) * width
            error = (
                None
                if entry["low"] is None
                else [[entry["mean"] - entry["low"]], [entry["high"] - entry["mean"]]]
            )
            ax.bar(x, entry["mean"], width * 0.9, color=f"C{j}", alpha=0.35, label=model if i == 0 else None)
            ax.errorbar(x, entry["mean"], yerr=error, color="black", capsize=3, lw=1)
            ax.scatter(
                x + rng.uniform(-width / 5, width / 5, len(found)), found, s=14, color=f"C{j}", zorder=3
            )
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 3 else 0)
    ax.set_ylabel(metric)
    ax.set_title(f"{protocol.name}: {metric}, mean and 95% t interval; points: runs")
    ax.legend(fontsize=8)
    return fig


def few_shot_figure(protocol: Protocol, summary: Sequence[dict]):
    """QWK and AUROC (the protocol's metrics) against shots per grade, mean and t interval per model."""
    fig, axes = plt.subplots(
        1, len(protocol.metrics), figsize=(4.2 * len(protocol.metrics), 3.4), constrained_layout=True
    )
    for ax, metric in zip(np.atleast_1d(axes), protocol.metrics, strict=True):
        for j, model in enumerate(protocol.models):
            points = sorted(
                (int(s["group"].split()[0]), s)
                for s in summary
                if s["model"] == model and s["metric"] == metric
            )
            if not points:
                continue
            shots = [p for p, _ in points]
            means = [s["mean"] for _, s in points]
            ax.plot(shots, means, marker="o", color=f"C{j}", label=model)
            low = [s["low"] if s["low"] is not None else s["mean"] for _, s in points]
            high = [s["high"] if s["high"] is not None else s["mean"] for _, s in points]
            ax.fill_between(shots, low, high, color=f"C{j}", alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training images per grade")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
    fig.suptitle(f"{protocol.name}: few-shot curve (mean, 95% t interval over seeds)")
    return fig


def heat_map_figure(protocol: Protocol, summary: Sequence[dict], metric: str):
    """Leave one source out: held-out source x model, the mean metric in each cell."""
    sources = [g for g in dict.fromkeys(s["group"] for s in summary) if g != "in-source"]
    index = {(s["group"], s["model"]): s["mean"] for s in summary if s["metric"] == metric}
    grid = np.array([[index.get((g, m), np.nan) for m in protocol.models] for g in sources], dtype=float)
    fig, ax = plt.subplots(
        figsize=(1.6 * len(protocol.models) + 2, 0.5 * len(sources) + 1.6), constrained_layout=True
    )
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, fmt(float(value)), ha="center", va="center", color="white", fontsize=8)
    ax.set_xticks(range(len(protocol.models)), protocol.models)
    ax.set_yticks(range(len(sources)), [f"{s} held out" for s in sources])
    fig.colorbar(image, ax=ax, label=f"mean {metric}")
    ax.set_title(f"{protocol.name}: external validation, {metric}")
    return fig


def write_protocol_report(protocol: Protocol, rows: Sequence[dict], out: Path, title: str) -> str:
    """Write the CSVs, figures and report.md; returns the Markdown.

    Args:
        protocol: the protocol.
        rows: the per-run rows (``ProtocolRunner.run``).
        out: the report folder.
        title: the report's first line.
    """
    summary, comparisons = summarise(protocol, rows), compare(protocol, rows)
    write_csv(out / "runs.csv", rows)
    write_csv(out / "summary.csv", summary)
    write_csv(out / "comparisons.csv", comparisons)
    first = protocol.metrics[0]
    figures = {f"seed_spread_{first}": spread_figure(protocol, rows, summary, first)}
    if protocol.design == "few_shot":
        figures["few_shot_curve"] = few_shot_figure(protocol, summary)
    if protocol.design == "leave_one_source_out":
        figures[f"loso_heat_map_{first}"] = heat_map_figure(protocol, summary, first)
    for name, figure in figures.items():
        save_figure(figure, out / f"{name}.png", dpi=120)
        plt.close(figure)
    runs = len(dict.fromkeys(r["run"] for r in rows))
    sections = [
        title,
        f"Protocol `{protocol.name}` ({protocol.design}): {protocol.description or ''} "
        f"{runs} runs x {len(protocol.models)} models; seeds {protocol.seeds}"
        + (f", {protocol.folds} folds (test {protocol.test})" if protocol.folds else "")
        + (f", shots {protocol.shots}" if protocol.shots else "")
        + ". Split files: `splits/<run>.csv` (pass one back with `--data.split_file`).",
        "## Mean over runs, 95% t interval\n\n" + summary_table(protocol, summary),
    ]
    if protocol.design == "leave_one_source_out":
        sections.append("## External validation\n\n" + external_table(protocol, summary, first))
    sections.append(
        "## Paired comparisons (same runs)\n\n"
        + (comparison_table(comparisons) if comparisons else "One model: nothing to compare.")
        + "\n\nk folds: corrected resampled t test (Nadeau and Bengio 2003, n_test/n_train of the runs); "
        "seeds alone: paired t test. Per-run values and their bootstrap intervals: `runs.csv`."
    )
    sections.append("Figures: " + ", ".join(f"`{n}.png`" for n in figures))
    text = "\n\n".join(sections) + "\n"
    atomic_write_text(out / "report.md", text)
    return text
