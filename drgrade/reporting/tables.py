"""``drgrade report``'s clinical tables: paired differences, operating points, calibration, per source.

Each is read back from the runs' files (metrics.json and predictions.csv), like Table 3, so an
archived run folder reproduces them. Paired differences re-run the bootstrap on the saved
predictions with the *same* resamples for both models, and only for runs on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drgrade.decision.choices import choice_text, tie_text
from drgrade.evaluation.bootstrap import PAIRED_METRICS, BootstrapSpec, paired_differences
from drgrade.evaluation.patients import PUBLISHED, PUBLISHED_NOTE
from drgrade.evaluation.summary import PLAIN_BEFORE
from drgrade.predictions import SavedPredictions, read_predictions
from drgrade.reporting.markup import PROPORTION, bounds_of, number, valid


def with_interval(
    value: float | None, interval: Sequence[float] | None, digits: int = 3, bounds: tuple = PROPORTION
) -> str:
    """``0.873 (0.840-0.901)``; the value alone without an interval, ``-`` without a value.

    A value or endpoint that is not a finite number within ``bounds`` shows as ``invalid``.
    """
    if value is None:
        return "-"
    shown = number(value, bounds, digits)
    if not interval:
        return shown
    if not isinstance(interval, Sequence) or len(interval) != 2:
        return f"{shown} (invalid interval)"
    return f"{shown} ({number(interval[0], bounds, digits)}-{number(interval[1], bounds, digits)})"


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


def full_precision(value: object) -> str:
    """A cut as the shortest text that reads back as the same number (``invalid`` outside 0-1)."""
    return repr(float(value)) if valid(value) else number(value)


def near_cut_text(point: dict) -> str:
    """``12 (±0.001)``: the images scoring within the stated margin of a cut (``-`` where not counted)."""
    near, margin = point.get("near_cut"), point.get("near_cut_margin")
    if near is None:
        return "-"
    shown = f"{margin:g}" if valid(margin) else number(margin)
    return f"{number(near, (0, math.inf), digits=0)} (±{shown})"


def scaling_effect(before: object, after: object) -> str:
    """Whether the temperature made this split's ECE worse or better, and by how much."""
    if not (valid(before) and valid(after)):
        return "-"
    change = "worsened ECE" if after > before else "improved ECE" if after < before else "no change"
    return f"{change} ({after - before:+.3f})"


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
                rows.append(
                    [
                        run.label,
                        point["name"],
                        unit,
                        full_precision(point["threshold"]),
                        near_cut_text(point),
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
                number(calibration["temperature"], (0.0, math.inf)),
                number(before) + ("" if plain else f" ({calibration['before']})"),
                number(after),
                scaling_effect(before, after),
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
                    number(metrics["num_images"], (0, math.inf), digits=0),
                    *(with_interval(metrics.get(k), intervals.get(k), bounds=bounds_of(k)) for k in keys),
                ]
            )
    return rows


#: The report's caption of ``patient_level_table``.
PATIENT_LEVEL_CAPTION = (
    "Patients: exam decisions (refer if either eye refers; an eye whose photographs are all "
    "ungradable, or whose worst photograph is too uncertain, is insufficient) at the validation "
    "cut; imageability is the share of patients decided; sensitivity / specificity among them, "
    "truth the worst eye, or DME where graded (Wilson 95% intervals). Vision-threatening DR: "
    "the vtDR flag (severe NPDR or worse by score, or DME) against severe or worse, or DME"
)


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


def choices_table(runs: Sequence) -> list[list[str]]:
    """What each run chose on validation and on what evidence: ``auto``'s margin, zero-shot's template set.

    The records come from the runs' metrics.json: one that cannot be told (a field missing or not
    a number) shows as ``invalid record``, never stops the report.
    """
    rows = [["Model", "Choice on validation", "How it was made"]]
    for run in first_columns(runs):
        document = run.document
        choice = document.get("threshold_choice")
        if isinstance(choice, dict) and choice.get("setting") == "auto":
            rows.append([run.label, f"thresholds: {choice.get('objective')}", _told(choice_text, choice)])
        if document.get("template_set"):
            tie = document.get("template_tie")
            how = _told(tie_text, tie) if tie else _told(_ahead, document.get("template_scores") or {})
            rows.append([run.label, f"template set: {document['template_set']}", how])
    return rows


def _ahead(scores: dict) -> str:
    shown = (f"{name} {'-' if value is None else f'{value:.4f}'}" for name, value in scores.items())
    return "ahead of every other set: " + ", ".join(shown)


def _told(describe, record) -> str:
    """``describe(record)``, or ``invalid record`` when the file's record is not what was written."""
    try:
        return describe(record)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return "invalid record"
