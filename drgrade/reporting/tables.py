"""``drgrade report``'s clinical tables: paired differences, operating points, calibration, per source.

Each is read back from the runs' files (metrics.json and predictions.csv), like Table 3, so an
archived run folder reproduces them. Paired differences re-run the bootstrap on the saved
predictions with the *same* resamples for both models, and only for runs on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drgrade.decision.choices import choice_text, tie_text
from drgrade.evaluation.bootstrap import PAIRED_METRICS, BootstrapSpec, paired_differences
from drgrade.evaluation.summary import PLAIN_BEFORE
from drgrade.predictions import SavedPredictions, read_predictions


def with_interval(value: float | None, interval: Sequence[float] | None, digits: int = 3) -> str:
    """``0.873 (0.840-0.901)``; the value alone without an interval, ``-`` without a value."""
    if value is None:
        return "-"
    if not interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({interval[0]:.{digits}f}-{interval[1]:.{digits}f})"


def first_columns(runs: Sequence) -> list:
    """One column per run directory: its own decision rule (the first column it gave)."""
    seen: dict[Path, object] = {}
    for run in runs:
        seen.setdefault(run.directory, run)
    return list(seen.values())


def _saved(run) -> SavedPredictions | None:
    path = run.directory / "predictions.csv"
    return read_predictions(path) if path.is_file() else None


def paired_table(runs: Sequence) -> list[list[str]]:
    """Differences (row model minus column model) in accuracy, QWK and macro AUROC, with intervals.

    Args:
        runs: the report's columns (``RunResult``); each run's own decision rule is compared.
    """
    header = ["Comparison", *(f"Δ {name}" for name in PAIRED_METRICS)]
    rows = [header]
    columns = [(run, _saved(run)) for run in first_columns(runs)]
    for i, (first, a) in enumerate(columns):
        for second, b in columns[i + 1 :]:
            label = f"{first.label} − {second.label}"
            if a is None or b is None or sorted(a.files) != sorted(b.files):
                rows.append(
                    [label, *(["not compared: the runs graded different images"] * len(PAIRED_METRICS))]
                )
                continue
            position = {file: i for i, file in enumerate(b.files)}
            order = np.array([position[file] for file in a.files])  # b's rows in a's order
            if not np.array_equal(a.targets, b.targets[order]):
                rows.append([label, *(["not compared: reference grades differ"] * len(PAIRED_METRICS))])
                continue
            setting = first.document.get("bootstrap", {})
            spec = BootstrapSpec(
                resamples=setting.get("resamples", 2000) or 2000, seed=setting.get("seed", 0)
            )
            result = paired_differences(
                (a.probabilities.astype(np.float64), a.grades),
                (b.probabilities.astype(np.float64)[order], b.grades[order]),
                a.targets,
                a.patients,
                spec,
            )
            rows.append(
                [label, *(_signed(result[m]["difference"], result[m]["interval"]) for m in PAIRED_METRICS)]
            )
    return rows


def _signed(value: float, interval: Sequence[float] | None) -> str:
    text = f"{value:+.3f}"
    return f"{text} ({interval[0]:+.3f} to {interval[1]:+.3f})" if interval else text


def operating_point_table(runs: Sequence) -> list[list[str]]:
    """Each run's validation-chosen operating points on the evaluated split (Wilson 95% intervals).

    Cuts are written in full (the shortest text that reads back as the same number), so a printed
    cut applied to the same scores gives the same flags; beside each, how many of the split's
    images score within the stated margin of it.
    """
    rows = [
        [
            "Model",
            "Operating point",
            "Unit",
            "Cut (from validation, full precision)",
            "Images within margin of the cut",
            "Sensitivity",
            "Specificity",
        ]
    ]
    for run in first_columns(runs):
        per_patient = run.document.get("per_patient", {}).get("operating_points", [])
        for unit, points in (("image", run.document.get("operating_points", [])), ("patient", per_patient)):
            for point in points:
                near = point.get("near_cut")
                rows.append(
                    [
                        run.label,
                        point["name"],
                        unit,
                        repr(float(point["threshold"])),
                        "-" if near is None else f"{near} (±{point['near_cut_margin']:g})",
                        with_interval(point["sensitivity"], point["sensitivity_ci"]),
                        with_interval(point["specificity"], point["specificity_ci"]),
                    ]
                )
    return rows


def calibration_table(runs: Sequence) -> list[list[str]]:
    """Temperature, ECE before and after it (and whether it helped), referral AUROCs, referral area.

    Temperature scaling minimises validation NLL, not ECE: on test it can make ECE worse, and the
    table says so. An ensemble's "before" is already after its members' own temperatures.
    """
    rows = [
        [
            "Model",
            "Temperature",
            "ECE before",
            "ECE after",
            "Temperature scaling on this split",
            "Referable AUROC",
            "VTDR AUROC",
            "Accuracy-referral area (entropy)",
        ]
    ]
    for run in first_columns(runs):
        calibration = run.document.get("calibration_error")
        if not calibration:
            continue
        intervals = run.intervals
        referral = run.document.get("referral", {}).get("auc_accuracy", {})
        before, after = calibration["ece_before"], calibration["ece_after"]
        plain = calibration.get("before", PLAIN_BEFORE) == PLAIN_BEFORE
        rows.append(
            [
                run.label,
                f"{calibration['temperature']:.3f}",
                f"{before:.3f}" + ("" if plain else f" ({calibration['before']})"),
                f"{after:.3f}",
                ("worsened ECE" if after > before else "improved ECE" if after < before else "no change")
                + f" ({after - before:+.3f})",
                with_interval(run.metrics.get("referable_auroc"), intervals.get("referable_auroc")),
                with_interval(run.metrics.get("vtdr_auroc"), intervals.get("vtdr_auroc")),
                with_interval(referral.get("entropy"), None),
            ]
        )
    return rows


#: The per-source table's figures and their headers (the referable figures are of the decided grades).
PER_SOURCE_KEYS = {
    "accuracy": "Accuracy",
    "qwk": "QWK",
    "auroc_macro": "AUROC (macro)",
    "referable_sensitivity": "Referable sensitivity (by grade)",
    "referable_specificity": "Referable specificity (by grade)",
}


def per_source_table(runs: Sequence) -> list[list[str]]:
    """Accuracy, QWK and macro AUROC of each run on each data source, with intervals."""
    keys = tuple(PER_SOURCE_KEYS)
    rows = [["Model", "Source", "Images", *PER_SOURCE_KEYS.values()]]
    for run in first_columns(runs):
        for source, result in run.document.get("per_source", {}).items():
            metrics, intervals = result["metrics"], result["confidence_intervals"]
            rows.append(
                [
                    run.label,
                    source,
                    str(metrics["num_images"]),
                    *(with_interval(metrics.get(k), intervals.get(k)) for k in keys),
                ]
            )
    return rows


def choices_table(runs: Sequence) -> list[list[str]]:
    """What each run chose on validation and on what evidence: ``auto``'s margin, zero-shot's template set."""
    rows = [["Model", "Choice on validation", "How it was made"]]
    for run in first_columns(runs):
        document = run.document
        choice = document.get("threshold_choice")
        if choice and choice.get("setting") == "auto":
            rows.append([run.label, f"thresholds: {choice['objective']}", choice_text(choice)])
        if document.get("template_set"):
            tie = document.get("template_tie")
            scores = document.get("template_scores") or {}
            how = (
                tie_text(tie)
                if tie
                else "ahead of every other set: "
                + ", ".join(f"{n} {'-' if v is None else f'{v:.4f}'}" for n, v in scores.items())
            )
            rows.append([run.label, f"template set: {document['template_set']}", how])
    return rows
