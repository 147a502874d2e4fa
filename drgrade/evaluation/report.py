"""``drgrade report``'s tables and figures.

Table 3 and Table 4 from several runs' metrics.json, as Markdown and CSV, plus the runs' confusion matrices
side by side.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from drgrade.evaluation import paper
from drgrade.evaluation.plots import draw_confusion
from drgrade.files import atomic_open, atomic_write_text, save_figure
from drgrade.grades import GRADES

#: Task class name -> the column name the paper uses.
COLUMN_NAMES = {
    "ZeroShotCLIP": "Zero-shot",
    "FCNCLIP": "FCN-CLIP",
    "RankingCLIP": "Ranking",
    "EnsembleCLIP": "Ensemble",
}


@dataclass
class RunResult:
    """One run's evaluation as the report reads it."""

    name: str
    directory: Path
    metrics: dict
    confusion: np.ndarray


def load_run(directory: str | Path) -> RunResult:
    """A run directory's test (or validation) evaluation; says what is missing otherwise."""
    directory = Path(directory)
    path = directory / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `drgrade test` for this model first, "
            "then pass the run directory it printed"
        )
    document = json.loads(path.read_text())
    return RunResult(
        COLUMN_NAMES.get(document["model"], document["model"]),
        directory,
        document["metrics"],
        np.asarray(document["confusion_matrix"]),
    )


def table3_rows() -> list[tuple[str, str]]:
    """(row label, metric key) in the paper's order, then the added rows."""
    rows = []
    for grade in GRADES:
        rows += [
            (f"{grade.name} {label}", f"{key}_{grade.short}")
            for label, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1"))
        ]
    rows += [
        ("Accuracy", "accuracy"),
        ("Macro precision", "macro_precision"),
        ("Macro recall", "macro_recall"),
        ("AUROC (macro)", "auroc_macro"),
        ("QWK", "qwk"),
        ("Referable sensitivity", "referable_sensitivity"),
        ("Referable specificity", "referable_specificity"),
    ]
    return rows


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def build_tables(runs: Sequence[RunResult], with_paper: bool) -> tuple[list[list[str]], list[list[str]]]:
    """Table 3 and Table 4 as rows of strings (header first)."""
    names = [r.name for r in runs]
    paper_columns = [n for n in names if n in paper.TABLE4] if with_paper else []
    header3 = ["Metric", *names, *(f"{n} (paper)" for n in paper_columns)]
    table3 = [header3]
    for label, key in table3_rows():
        ours = [_fmt(r.metrics.get(key)) for r in runs]
        published = [_fmt(paper.TABLE3.get(key, {}).get(n)) for n in paper_columns]
        table3.append([label, *ours, *published])
    table4 = [["Model", "Exact match", "Off-by-one", "Off-by-two+"]]
    for r in runs:
        table4.append(
            [r.name, *(f"{100 * r.metrics[k]:.1f}%" for k in ("exact", "off_by_one", "off_by_two_plus"))]
        )
    for name in paper_columns:
        table4.append([f"{name} (paper)", *(f"{100 * v:.0f}%" for v in paper.TABLE4[name])])
    return table3, table4


def markdown(rows: list[list[str]]) -> str:
    """Rows (header first) as a Markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def confusion_sheet(runs: Sequence[RunResult], path: Path) -> None:
    """Every run's confusion matrix side by side, saved to ``path``."""
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4.8), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        draw_confusion(ax, run.confusion, run.name)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def write_report(
    run_dirs: Sequence[str | Path], out: str | Path, with_paper: bool = False, title: str = ""
) -> str:
    """Write table3/table4 (.md, .csv) and confusion_matrices.png into ``out``; return the Markdown."""
    runs = [load_run(d) for d in run_dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table3, table4 = build_tables(runs, with_paper)
    for name, rows in (("table3", table3), ("table4", table4)):
        with atomic_open(out / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    text = (f"{title}\n\n" if title else "") + (
        f"Table 3: per-class and overall test metrics\n\n{markdown(table3)}\n\n"
        f"Table 4: error distribution (share of test predictions)\n\n{markdown(table4)}\n"
    )
    atomic_write_text(out / "report.md", text)
    confusion_sheet(runs, out / "confusion_matrices.png")
    return text
