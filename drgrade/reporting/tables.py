"""``drgrade report``'s clinical tables: paired differences, operating points, calibration, per source.

Each is read back from the runs' files (metrics.json and predictions.csv), like Table 3, so an
archived run folder reproduces them. Paired differences re-run the bootstrap on the saved
predictions with the *same* resamples for both models, and only for runs on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drgrade.evaluation.bootstrap import PAIRED_METRICS, BootstrapSpec, paired_differences
from drgrade.evaluation.patients import PUBLISHED, PUBLISHED_NOTE
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
    """Each run's validation-chosen operating points on the evaluated split (Wilson 95% intervals)."""
    rows = [["Model", "Operating point", "Unit", "Cut (from validation)", "Sensitivity", "Specificity"]]
    for run in first_columns(runs):
        per_patient = run.document.get("per_patient", {}).get("operating_points", [])
        for unit, points in (("image", run.document.get("operating_points", [])), ("patient", per_patient)):
            for point in points:
                rows.append(
                    [
                        run.label,
                        point["name"],
                        unit,
                        f"{point['threshold']:.3f}",
                        with_interval(point["sensitivity"], point["sensitivity_ci"]),
                        with_interval(point["specificity"], point["specificity_ci"]),
                    ]
                )
    return rows


def calibration_table(runs: Sequence) -> list[list[str]]:
    """Temperature, ECE before and after it, referral AUROCs and the accuracy-referral area."""
    rows = [
        [
            "Model",
            "Temperature",
            "ECE before",
            "ECE after",
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
        rows.append(
            [
                run.label,
                f"{calibration['temperature']:.3f}",
                f"{calibration['ece_before']:.3f}",
                f"{calibration['ece_after']:.3f}",
                with_interval(run.metrics.get("referable_auroc"), intervals.get("referable_auroc")),
                with_interval(run.metrics.get("vtdr_auroc"), intervals.get("vtdr_auroc")),
                with_interval(referral.get("entropy"), None),
            ]
        )
    return rows


def per_source_table(runs: Sequence) -> list[list[str]]:
    """Accuracy, QWK and macro AUROC of each run on each data source, with intervals."""
    keys = ("accuracy", "qwk", "auroc_macro", "referable_sensitivity", "referable_specificity")
    rows = [["Model", "Source", "Images", *keys]]
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


def patient_level_table(runs: Sequence) -> list[list[str]]:
    """Each run's exam decisions per patient (Wilson 95% intervals), then the published trial figures.

    The published rows are labelled as what they are: trial results on other patients and data.
    """
    header = ["Model", "Patients", "Imageability", "Level", "Sensitivity", "Specificity"]
    rows = [header]
    for run in first_columns(runs):
        figures = run.document.get("patient_level")
        if not figures:
            continue
        shown = with_interval(figures["imageability"], figures["imageability_ci"])
        for level in ("referable", "vtdr"):
            entry = figures[level]
            rows.append(
                [
                    run.label,
                    str(figures["num_patients"]),
                    shown,
                    level,
                    with_interval(entry["sensitivity"], entry["sensitivity_ci"]),
                    with_interval(entry["specificity"], entry["specificity_ci"]),
                ]
            )
    if len(rows) == 1:
        return rows
    for result in PUBLISHED:
        rows.append(
            [
                f"{result['system']}: {PUBLISHED_NOTE}",
                "-",
                with_interval(result.get("imageability"), result.get("imageability_ci")),
                result["level"],
                with_interval(result["sensitivity"], result.get("sensitivity_ci")),
                with_interval(result["specificity"], result.get("specificity_ci")),
            ]
        )
    return rows
