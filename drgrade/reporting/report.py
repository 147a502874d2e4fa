"""``drgrade report``'s tables and figures.

Table 3 (with bootstrap intervals) and Table 4 from several runs' metrics.json, the clinical tables
(paired differences, operating points, calibration, per source), as Markdown and CSV, plus the
runs' confusion matrices side by side and per-model figures.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from drgrade.errors import OptionError
from drgrade.evaluation.bootstrap import unit_phrase
from drgrade.evaluation.proportions import METHODS
from drgrade.files import atomic_open, atomic_write_text, neutralise
from drgrade.grades import GRADES
from drgrade.reporting import paper
from drgrade.reporting.figures import write_model_figures
from drgrade.reporting.markup import bounds_of, md, number, valid
from drgrade.reporting.plots import confusion_sheet
from drgrade.reporting.provenance import provenance_block
from drgrade.reporting.tables import (
    PATIENT_LEVEL_CAPTION,
    PER_SOURCE_KEYS,
    calibration_table,
    choices_table,
    first_columns,
    operating_point_table,
    paired_table,
    patient_level_table,
    per_source_table,
    with_interval,
)


@dataclass
class RunResult:
    """One column of the report: a run's evaluation under one decision rule.

    A calibrated run gives two columns, its calibrated decisions and plain argmax, so the two
    rules are never compared unlabelled.
    """

    name: str
    stage: str
    decision: str
    directory: Path
    metrics: dict
    confusion: np.ndarray
    checkpoint: str | None = None
    #: This column's bootstrap intervals by metric name (empty for runs written without them).
    intervals: dict = field(default_factory=dict)
    #: The whole metrics.json the column came from.
    document: dict = field(default_factory=dict)
    #: How many bootstrap resamples left each metric undefined (those that some did).
    undefined: dict = field(default_factory=dict)

    @property
    def held_out(self) -> list[str]:
        """The sources held out as the test split (external validation), if any."""
        return (self.document.get("split") or {}).get("test_sources") or []

    @property
    def label(self) -> str:
        """The column header: model, stage (external test names its sources) and decision rule."""
        stage = (
            f"external test: {', '.join(self.held_out)}"
            if self.held_out and self.stage == "test"
            else self.stage
        )
        return f"{self.name} [{stage}, {self.decision}]"


def load_run(directory: str | Path) -> list[RunResult]:
    """A run directory's evaluation as report columns; says what is missing otherwise.

    Args:
        directory: a ``drgrade validate`` / ``test`` run folder.
    """
    directory = Path(directory)
    path = directory / "metrics.json"
    if not path.is_file():
        raise OptionError(
            f"{path} not found: run `drgrade test` for this model first, "
            "then pass the run directory it printed"
        )
    document = json.loads(path.read_text())
    name = document.get("model_name", document["model"])
    stage = "val" if document["stage"] == "val" else "test"
    columns = [
        RunResult(
            name,
            stage,
            document["decision"],
            directory,
            document["metrics"],
            np.asarray(document["confusion_matrix"]),
            document.get("checkpoint"),
            document.get("confidence_intervals") or {},
            document,
            document.get("undefined_resamples") or {},
        )
    ]
    if "argmax_metrics" in document:
        columns.append(
            replace(
                columns[0],
                decision="argmax",
                metrics=document["argmax_metrics"],
                confusion=np.asarray(document["argmax_confusion_matrix"]),
                intervals=document.get("argmax_confidence_intervals") or {},
                undefined=document.get("argmax_undefined_resamples") or {},
            )
        )
    return columns


def check_comparable(runs: Sequence[RunResult], allow_mixed: bool) -> str:
    """The stage all columns share; columns that are not comparable are refused unless asked.

    Comparable columns evaluate the same stage of the same split on the same images: a
    validation result beside a test result, an internal test beside an external one, or runs
    on differently drawn splits are not a comparison (and the intervals' resampling unit differs).

    Args:
        runs: the report's columns.
        allow_mixed: show them anyway, each labelled with its stage (external tests name their sources).
    """
    differences = []
    for what, key in (
        ("stages", lambda r: r.stage),
        ("splits (fingerprints)", lambda r: (r.document.get("split") or {}).get("fingerprint")),
        ("graded images", lambda r: (r.document.get("evaluated") or {}).get("fingerprint")),
    ):
        if len({key(r) for r in runs}) > 1:
            differences.append(what)
    if differences and not allow_mixed:
        listed = "\n".join(f"  - {r.directory}: {r.label}" for r in runs)
        raise OptionError(
            f"the runs differ in {' and '.join(differences)}, so their numbers are not a comparison:\n"
            f"{listed}\nReport runs of one split and stage together (one report per split), or pass "
            "--allow_mixed to show them side by side, each labelled."
        )
    stages = sorted({r.stage for r in runs})
    return stages[0] if len(stages) == 1 else "mixed"


#: Table 3's per-grade figures (metric key prefixes).
PER_GRADE = ("precision", "recall", "f1", "auroc")


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
        ("Referable sensitivity (by grade)", "referable_sensitivity"),
        ("Referable specificity (by grade)", "referable_specificity"),
        ("Referable AUROC", "referable_auroc"),
        ("VTDR AUROC", "vtdr_auroc"),
    ]
    return rows


def build_tables(runs: Sequence[RunResult], with_paper: bool) -> tuple[list[list[str]], list[list[str]]]:
    """Table 3 and Table 4 as rows of strings (header first)."""
    names = list(dict.fromkeys(r.name for r in runs))
    paper_columns = [n for n in names if n in paper.TABLE4] if with_paper else []
    header3 = ["Metric", *(r.label for r in runs), *(f"{n} (paper)" for n in paper_columns)]
    table3 = [header3]
    for label, key in table3_rows():
        ours = [with_interval(r.metrics.get(key), r.intervals.get(key), bounds=bounds_of(key)) for r in runs]
        published = [with_interval(paper.TABLE3.get(key, {}).get(n), None) for n in paper_columns]
        table3.append([label, *ours, *published])
    table4 = [["Model", "Exact match", "Off-by-one", "Off-by-two+"]]
    for r in runs:
        table4.append([r.label, *(percent(r.metrics[k]) for k in ("exact", "off_by_one", "off_by_two_plus"))])
    for name in paper_columns:
        table4.append([f"{name} (paper)", *(f"{100 * v:.0f}%" for v in paper.TABLE4[name])])
    return table3, table4


def percent(value: object) -> str:
    """A share as ``12.5%``, or ``invalid`` when it is not a number in 0..1."""
    return f"{100 * value:.1f}%" if valid(value) else number(value)


def markdown(rows: list[list[str]]) -> str:
    """Rows (header first) as a Markdown table; every cell is literal text (``md``)."""
    lines = ["| " + " | ".join(md(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def resampled_unit(document: dict) -> str:
    """What a run's intervals resample, in words (per source where sources differ)."""
    setting = document.get("bootstrap", {})
    return unit_phrase(setting["units"]) if "units" in setting else f"{setting.get('unit', 'image')}s"


def interval_methods(document: dict, unit: str) -> str:
    """What the brackets of a table hold: Wilson for proportions, bootstrap for the rest.

    A run written before proportions had their own method says so: its brackets are all bootstrap.
    """
    if "interval_methods" not in document:
        return f"95% bootstrap intervals over {unit} in brackets"
    return (
        f"95% intervals in brackets: {METHODS['wilson']} for proportions (per-grade precision and "
        "recall, accuracy, referable sensitivity and specificity; they do not collapse at 0 or 1), "
        f"{METHODS['bootstrap']} over {unit} for the rest (F1, macro figures, AUROC, QWK)"
    )


def undefined_note(runs: Sequence[RunResult]) -> str:
    """Table 3's footnote: what ``-`` means, and which intervals leave out undefined resamples."""
    summary = {key for _, key in table3_rows()} - {f"{m}_{g.short}" for g in GRADES for m in PER_GRADE}
    resamples = runs[0].document.get("bootstrap", {}).get("resamples", 0)
    left_out = [
        f"{key} {count} of {resamples} ({md(run.label)})"
        for run in runs
        for key, count in run.undefined.items()
        if key in summary and run.metrics.get(key) is not None
    ]
    note = (
        "`-`: undefined (precision of a grade never decided, recall or AUROC of a grade absent from "
        "the split, referable figures without both classes); never a measured zero."
    )
    for run in first_columns(runs):
        overlap = run.document.get("pretraining_overlap")
        if overlap:
            note += f" **{md(run.label)}: {md(overlap['note'])}.**"
    note += macro_note(runs)
    if left_out:
        note += " " + resamples_note(left_out)
    return note


def macro_note(runs: Sequence[RunResult]) -> str:
    """How many grades each column's macro precision and recall average (undefined ones are left out)."""
    counted = [
        f"{md(run.label)}: {md(run.metrics['macro_precision_grades'])} and "
        f"{md(run.metrics['macro_recall_grades'])}"
        for run in runs
        if "macro_precision_grades" in run.metrics
    ]
    if not counted:
        return ""
    return (
        " Macro precision averages the grades a column decided at least once and macro recall the "
        f"grades present in the split, of {len(GRADES)} (precision and recall: " + "; ".join(counted) + "); "
        "a grade without the figure is left out, never counted as 0."
    )


def resamples_note(left_out: Sequence[str]) -> str:
    """Which bootstrap intervals leave out resamples where their figure is undefined, and why."""
    return (
        "Intervals are over the resamples where the figure is defined; resamples left out: "
        + "; ".join(left_out)
        + ". A macro figure of a resample averages the grades of the whole split (AUROC: present; "
        "precision: decided; recall: present), so a resample missing one of them is left out rather "
        "than averaged over fewer grades; per-grade counts are in each run's metrics.json "
        "(`undefined_resamples`)."
    )


def per_source_note(runs: Sequence[RunResult]) -> str:
    """The per-source table's footnote: its intervals' resamples left out, as Table 3's."""
    shown = set(PER_SOURCE_KEYS)
    left_out = [
        f"{key} {md(count)} of {md(run.document.get('bootstrap', {}).get('resamples', 0))} "
        f"({md(run.label)}, {md(source)})"
        for run in first_columns(runs)
        for source, part in run.document.get("per_source", {}).items()
        for key, count in (part.get("undefined_resamples") or {}).items()
        if key in shown and part["metrics"].get(key) is not None
    ]
    return resamples_note(left_out) if left_out else ""


CALIBRATION_CAPTION = (
    "Calibration (15-bin top-label ECE: the max probability against the argmax's accuracy; "
    "temperature fitted on validation by NLL, so it can worsen ECE, as the fifth column says; "
    "classwise ECE in metrics.json) and uncertainty referral "
    "(AUROCs with 95% percentile bootstrap intervals"
)
CHOICES_CAPTION = (
    "Choices made on validation: a fitted threshold rule is kept only when its cross-fitted "
    "gain over argmax is beyond noise; tied template sets are named, with the tie-break"
)


def report_tables(
    runs: Sequence[RunResult], stage: str, with_paper: bool
) -> dict[str, tuple[str, list[list[str]], str]]:
    """Every table of the report by file name: (caption, rows with the header first, footnote).

    Args:
        runs: the report's columns.
        stage: the stage they share (``mixed`` when allowed to differ).
        with_paper: add the paper's published numbers to Tables 3 and 4.
    """
    table3, table4 = build_tables(runs, with_paper)
    shown = {"val": "validation", "test": "test"}.get(stage, "validation and test")
    unit = md(resampled_unit(runs[0].document))
    methods = interval_methods(runs[0].document, unit)
    return {
        "table3": (
            f"Table 3: per-class and overall {shown} metrics (columns: model [stage, decision rule]); "
            f"{methods}",
            table3,
            undefined_note(runs),
        ),
        "table4": (f"Table 4: error distribution (share of {shown} predictions)", table4, ""),
        "paired": (
            "Paired differences (first minus second, same bootstrap resamples for both, 95% intervals)",
            paired_table(runs),
            "",
        ),
        "operating_points": (
            "Referral operating points: cuts chosen on validation, applied unchanged "
            "(sensitivity / specificity with Wilson 95% intervals; a patient is referred when any of "
            f"their images is, and counted by their worst eye; patient rows count {unit})",
            operating_point_table(runs),
            "",
        ),
        "patient_level": (PATIENT_LEVEL_CAPTION, patient_level_table(runs), ""),
        "calibration": (f"{CALIBRATION_CAPTION} over {unit})", calibration_table(runs), ""),
        "choices": (CHOICES_CAPTION, choices_table(runs), ""),
        "per_source": (
            f"Per data source ({shown}); {methods}",
            per_source_table(runs),
            per_source_note(runs),
        ),
    }


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    with_paper: bool = False,
    title: str = "",
    allow_mixed: bool = False,
) -> str:
    """Write the tables (.md, .csv), confusion_matrices.png and per-model figures; return the Markdown.

    Args:
        run_dirs: validate/test run folders.
        out: the report folder.
        with_paper: add the paper's published numbers.
        title: a first line for report.md.
        allow_mixed: accept runs of different stages, splits or images together (labelled).
    """
    runs = [column for d in run_dirs for column in load_run(d)]
    stage = check_comparable(runs, allow_mixed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = report_tables(runs, stage, with_paper)
    sections = [f"{title}\n"] if title else []
    sections.append(provenance_block(first_columns(runs), with_paper))
    for name, (caption, rows, note) in tables.items():
        with atomic_open(out / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([[neutralise(cell) for cell in row] for row in rows])
        if len(rows) > 1:
            sections.append(f"{caption}\n\n{markdown(rows)}\n" + (f"\n{note}\n" if note else ""))
    text = "\n".join(sections)
    atomic_write_text(out / "report.md", text)
    confusion_sheet(runs, out / "confusion_matrices.png")
    write_model_figures(runs, out / "figures")
    return text
