"""The one prediction-file schema: its writer and its reader.

Shared by ``predict``, evaluation, ``explain``, the ONNX runner and the web page: the same columns
everywhere, probabilities named by grade. A row's decision comes from the decision rule (a
checkpoint's ``DecisionRule`` or an exported graph's outputs) and is checked before it is
written: an output that is not a distribution, or a grade that is not the rule's, becomes an
``error`` and no grade. Probabilities are written with 9 significant digits, which round-trip
float32 exactly, so a report recomputed from the file equals the one computed in the run.

Torch-free on purpose: the ONNX runner imports it without PyTorch installed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from drgrade.data.quality import FEATURES
from drgrade.decision.actions import photo_action
from drgrade.decision.checks import output_problem
from drgrade.files import atomic_open, file_sha256, neutralise, restore
from drgrade.grades import GRADE_NAMES, GRADES, VISION_THREATENING_FROM

#: One probability column per grade: ``p_no``, ``p_mild``, ``p_moderate``, ``p_severe``, ``p_proliferative``.
PROB_COLUMNS = tuple(f"p_{g.short}" for g in GRADES)
#: The decision columns, in the order of the rule's outputs.
DECISION_COLUMNS = (
    "grade",
    "grade_name",
    *PROB_COLUMNS,
    "p_referable",
    "referable_by_grade",
    "referable_by_score",
    "uncertainty",
    "refer_to_grader",
    "p_dme",
    "dme",
    "referable_dr",
    "vtdr",
)
#: Every prediction file's columns, in order (``model`` and ``checkpoint``: where the row came from;
#: ``eye`` and ``field``: which eye and which photograph of it, where the data or a DICOM header says,
#: for exams; ``study_date``: the exam's date a DICOM photograph names;
#: ``action``: where the photograph goes, never empty, see ``drgrade.decision.actions``).
COLUMNS = (
    "file",
    "source",
    "patient_id",
    "eye",
    "field",
    "study_date",
    "true_grade",
    "true_dme",
    "action",
    *DECISION_COLUMNS,
    *FEATURES,
    "error",
    "model",
    "checkpoint",
)


def checkpoint_label(path: str | Path | None, digest: str | None = None) -> str:
    """A checkpoint as the ``checkpoint`` column names it: file name and SHA-256 (empty for none).

    Args:
        path: the checkpoint file.
        digest: its SHA-256 when the caller has it already (the file is not read again).
    """
    if not path:
        return ""
    return f"{Path(path).name} sha256:{digest or file_sha256(path)}"


@dataclass(frozen=True)
class Decision:
    """What the decision rule decided for one image (see ``drgrade.decision.apply.RuleOutput``)."""

    probabilities: tuple[float, ...]
    grade: int
    p_referable: float
    referable_by_grade: bool
    referable_by_score: bool
    uncertainty: float
    refer_to_grader: bool
    #: P(grade >= severe) at or over the validation vtDR cut (the grade decides without a cut).
    vtdr_by_score: bool = False
    #: P(DME) from a model with a DME output (None: it has none).
    p_dme: float | None = None
    #: ``p_dme`` at or over the validation DME cut (None: no DME output, or no cut).
    dme: bool | None = None

    @property
    def referable_dr(self) -> bool:
        """Referable DR as programmes define it: moderate NPDR or worse (by score) or DME."""
        return self.referable_by_score or bool(self.dme)

    @property
    def vtdr(self) -> bool:
        """Vision-threatening DR: severe NPDR or worse (by score) or DME."""
        return self.vtdr_by_score or bool(self.dme)

    @property
    def refers(self) -> bool:
        """Whether the referral rule refers this photograph to an eye specialist (``referable_dr``)."""
        return self.referable_dr

    def clinical(
        self, vtdr_cut: float | None, p_dme: float | None = None, dme_cut: float | None = None
    ) -> Decision:
        """This decision with its vtDR flag and DME output.

        Args:
            vtdr_cut: the validation cut on P(grade >= severe) for the target sensitivity (None:
                validation had no vtDR eye, so the grade decides, as for ``referable_by_score``).
            p_dme: the model's P(DME), when it has a DME output.
            dme_cut: the validation cut on P(DME) for the target sensitivity (None: undefined).
        """
        if vtdr_cut is None or math.isnan(vtdr_cut):
            vtdr = self.grade >= VISION_THREATENING_FROM
        else:
            vtdr = sum(self.probabilities[VISION_THREATENING_FROM:]) >= vtdr_cut
        known = p_dme is not None and dme_cut is not None and not math.isnan(dme_cut)
        return replace(self, vtdr_by_score=vtdr, p_dme=p_dme, dme=p_dme >= dme_cut if known else None)

    def cells(self) -> list[object]:
        """The decision columns' values."""
        return [
            self.grade,
            GRADE_NAMES[self.grade],
            *(_number(p) for p in self.probabilities),
            _number(self.p_referable),
            int(self.referable_by_grade),
            int(self.referable_by_score),
            _number(self.uncertainty),
            int(self.refer_to_grader),
            "" if self.p_dme is None else _number(self.p_dme),
            "" if self.dme is None else int(self.dme),
            int(self.referable_dr),
            int(self.vtdr),
        ]


def operating_cut(rule: dict, level: str, target: str = "sensitivity") -> float | None:
    """One operating point's cut in a rule's description (``DecisionRule.describe()``); None: undefined."""
    for point in rule.get("operating_points", []):
        if (point["level"], point["target"]) == (level, target):
            return point["cut"]
    return None


def checked_decisions(
    outputs: Sequence,
    thresholds: Sequence[float],
    vtdr_cut: float | None = None,
    p_dme: Sequence[float] | None = None,
    dme_cut: float | None = None,
) -> list[Decision | str]:
    """One ``Decision`` per image of a batch of rule outputs, or why that image's output is unusable.

    Args:
        outputs: the rule's outputs in ``RuleOutput`` order, torch tensors or NumPy arrays.
        thresholds: the rule's thresholds, to check each grade against.
        vtdr_cut: the rule's vtDR cut (``Decision.clinical``).
        p_dme: each image's P(DME) when the model has a DME output.
        dme_cut: the validation DME cut.
    """
    columns = [column.tolist() for column in outputs]
    dme = list(p_dme) if p_dme is not None else [None] * len(columns[0])
    decided: list[Decision | str] = []
    for (probabilities, grade, *flags), p in zip(zip(*columns, strict=True), dme, strict=True):
        problem = output_problem(probabilities, int(grade), thresholds)
        if p is not None and not 0 <= p <= 1:  # NaN included
            problem = problem or f"P(DME) {p!r} is not a probability"
        if problem:
            decided.append(f"not graded: {problem}")
            continue
        p_referable, by_grade, by_score, uncertainty, refer = flags
        decided.append(
            Decision(
                tuple(float(p) for p in probabilities),
                int(grade),
                float(p_referable),
                bool(by_grade),
                bool(by_score),
                float(uncertainty),
                bool(refer),
            ).clinical(vtdr_cut, None if p is None else float(p), dme_cut)
        )
    return decided


@dataclass
class PredictionRow:
    """One image's result: a decision, or the reason it has none.

    Args:
        file: the image's path.
        decision: what the rule decided, or None when the image was not graded.
        true_grade: the reference grade when known.
        source: the data source the image came from (empty for a plain folder).
        error: why the image was not graded (empty when it was).
        extra: further columns of this file (e.g. ``lesion_mass`` in explain.csv).
        patient_id: the patient the image belongs to, when its dataset, the exam manifest or its
            DICOM header names one (empty for a plain folder).
        eye: ``left`` or ``right`` when the data, the manifest or the DICOM header says.
        field: which photograph of the eye (``macula``, ``disc``, ``1``, ...) when known.
        study_date: the exam's date (ISO) when the image's DICOM header says.
        true_dme: the reference DME label (1 / 0) where the source grades it.
        quality: what the quality gate measured (``FEATURES``), when it ran.
        model: the model's display name.
        checkpoint: the checkpoint it was loaded from (``checkpoint_label``), or the exported graph's.
    """

    file: str
    decision: Decision | None = None
    true_grade: int | None = None
    source: str = ""
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    patient_id: str = ""
    quality: Sequence[float] | None = None
    model: str = ""
    checkpoint: str = ""
    eye: str = ""
    field: str = ""
    study_date: str = ""
    true_dme: int | None = None

    @property
    def action(self) -> str:
        """``refer``, ``no refer`` or ``to grader``: never empty (``drgrade.decision.actions``)."""
        decision = self.decision
        if decision is None:
            return photo_action(False, False, True)
        return photo_action(True, decision.refers, decision.refer_to_grader)

    def as_dict(self) -> dict[str, str]:
        """The row as a prediction file's reader sees it (``COLUMNS`` -> text), for exam decisions."""
        return {column: str(cell) for column, cell in zip(COLUMNS, self.cells(), strict=False)}

    def cells(self) -> list[object]:
        """The row's values in ``COLUMNS`` order, then ``extra``'s.

        A row without a grade has ``refer_to_grader`` 1: a clinic filtering on it finds every
        photograph a human must see.
        """
        if self.decision is not None:
            decided = self.decision.cells()
        else:
            decided = [1 if column == "refer_to_grader" else "" for column in DECISION_COLUMNS]
        return [
            self.file,
            self.source,
            self.patient_id,
            self.eye,
            self.field,
            self.study_date,
            "" if self.true_grade is None or self.true_grade < 0 else self.true_grade,
            "" if self.true_dme is None or self.true_dme < 0 else self.true_dme,
            self.action,
            *decided,
            *(_feature(v) for v in (self.quality or [math.nan] * len(FEATURES))),
            self.error,
            self.model,
            self.checkpoint,
            *self.extra.values(),
        ]


def decided_row(row: PredictionRow, decided: Decision | str) -> PredictionRow:
    """``row`` with the rule's decision, or with the reason its output was refused."""
    if isinstance(decided, str):
        row.error = decided
    else:
        row.decision = decided
    return row


def _number(value: float) -> str:
    return f"{value:.9g}"


def _feature(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}"


def write_csv(f, rows: list[PredictionRow]) -> None:
    """Write ``rows`` to an open text file: ``COLUMNS`` plus the first row's ``extra`` keys."""
    writer = csv.writer(f)
    writer.writerow([*COLUMNS, *(rows[0].extra if rows else [])])
    writer.writerows([neutralise(cell) for cell in row.cells()] for row in rows)


def write_predictions(
    path: str | Path, rows: Iterable[PredictionRow], model: str = "", checkpoint: str = ""
) -> Path:
    """Write ``rows`` as a prediction file, atomically (file names that are not UTF-8 kept as bytes).

    Args:
        path: the CSV to write.
        rows: the rows.
        model: the model's name, for rows that do not name theirs.
        checkpoint: its checkpoint label, for rows that do not name theirs.
    """
    rows = list(rows)
    for row in rows:
        row.model, row.checkpoint = row.model or model, row.checkpoint or checkpoint
    with atomic_open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        write_csv(f, rows)
    return Path(path)


def csv_text(rows: list[PredictionRow]) -> str:
    """The prediction file of ``rows`` as text (the web page's download)."""
    buffer = io.StringIO(newline="")
    write_csv(buffer, rows)
    return buffer.getvalue()


@dataclass
class SavedPredictions:
    """The graded, labelled rows of an evaluation's prediction file."""

    files: list[str]
    patients: list[str]
    #: [N, K] float32: exactly the probabilities the run computed its metrics from.
    probabilities: np.ndarray
    targets: np.ndarray
    grades: np.ndarray


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a file ``write_predictions`` wrote, as it was given (file names restored)."""
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["file"] = restore(row["file"])
    return rows


def read_predictions(path: Path) -> SavedPredictions:
    """The graded rows with a reference grade of a prediction file (the numbers it was written from).

    Args:
        path: an evaluation's predictions.csv.
    """
    rows = [r for r in read_rows(path) if r["grade"] != "" and r["true_grade"] != ""]
    files = [r["file"] for r in rows]
    return SavedPredictions(
        files,
        [restore(r.get("patient_id") or "") or file for r, file in zip(rows, files, strict=True)],
        np.array([[float(r[c]) for c in PROB_COLUMNS] for r in rows], np.float32).reshape(
            -1, len(PROB_COLUMNS)
        ),
        np.array([int(r["true_grade"]) for r in rows], np.int64),
        np.array([int(r["grade"]) for r in rows], np.int64),
    )


def ungradable_summary(rows: Sequence[PredictionRow]) -> str:
    """How many images were graded and the ungradable rate (imageability, as clinics report it).

    Args:
        rows: one per input image.
    """
    refused = sum(1 for row in rows if row.error)
    share = refused / len(rows) if rows else 0.0
    return f"graded {len(rows) - refused}, ungradable or unreadable {refused} ({share:.1%})"
