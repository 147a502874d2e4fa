"""The one prediction-row schema.

Shared by ``predict``, evaluation, ``explain`` and ``python -m drgrade.deploy``: the same column names
everywhere, probabilities named by grade.

Torch-free on purpose: the ONNX runner imports it without PyTorch installed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drgrade.data.quality import FEATURES
from drgrade.files import atomic_open
from drgrade.grades import GRADE_NAMES, GRADES, REFERABLE_FROM

#: One probability column per grade: ``p_no``, ``p_mild``, ``p_moderate``, ``p_severe``, ``p_proliferative``.
PROB_COLUMNS = tuple(f"p_{g.short}" for g in GRADES)
#: Every prediction file's columns, in order.
COLUMNS = (
    "file",
    "source",
    "patient_id",
    "true_grade",
    "grade",
    "grade_name",
    *PROB_COLUMNS,
    "p_referable",
    "referable",
    "uncertainty",
    "refer_to_grader",
    *FEATURES,
    "error",
)


@dataclass(frozen=True)
class ReferralRule:
    """The two flags a screening reader acts on, with the cuts fitted on validation.

    Args:
        referable_cut: flag referable DR when P(grade >= moderate) >= this (the validation
            operating point for the target sensitivity); None flags decided grade >= moderate.
        uncertainty_cutoff: send the image to a human grader when its predictive entropy
            exceeds this (infinite: never).
    """

    referable_cut: float | None = None
    uncertainty_cutoff: float = math.inf

    def flags(self, probabilities: Sequence[float], grade: int) -> tuple[float, bool, float, bool]:
        """(P(referable), referable flag, entropy in nats, refer to a grader) of one image."""
        p_referable = float(sum(probabilities[REFERABLE_FROM:]))
        referable = (
            grade >= REFERABLE_FROM if self.referable_cut is None else p_referable >= self.referable_cut
        )
        uncertainty = -sum(p * math.log(p) for p in probabilities if p > 0)
        return p_referable, referable, uncertainty, uncertainty > self.uncertainty_cutoff


@dataclass
class PredictionRow:
    """One image's result: a grade with its probabilities, or the reason it has none.

    Args:
        file: the image's path.
        probabilities: one per grade, or None when the image was not graded.
        grade: the decided grade (argmax or the calibrated rule), or None.
        true_grade: the reference grade when known.
        source: the data source the image came from (empty for a plain folder).
        error: why the image was not graded (empty when it was).
        extra: further columns of this file (e.g. ``model``, ``lesion_mass`` in explain.csv).
        patient_id: the patient the image belongs to, when the source knows it.
        rule: the referral cuts behind the ``referable`` and ``refer_to_grader`` flags.
        quality: what the quality gate measured (fundus fraction, brightness, focus), when it ran.
    """

    file: str
    probabilities: Sequence[float] | None = None
    grade: int | None = None
    true_grade: int | None = None
    source: str = ""
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    patient_id: str = ""
    rule: ReferralRule = ReferralRule()
    quality: Sequence[float] | None = None

    def cells(self) -> list[object]:
        """The row's values in ``COLUMNS`` order, then ``extra``'s."""
        graded = self.grade is not None and self.probabilities is not None
        if graded:
            p_referable, referable, uncertainty, refer = self.rule.flags(self.probabilities, self.grade)
            decided = [
                self.grade,
                GRADE_NAMES[self.grade],
                *(f"{p:.6f}" for p in self.probabilities),
                f"{p_referable:.6f}",
                int(referable),
                f"{uncertainty:.6f}",
                int(refer),
            ]
        else:
            decided = [""] * (len(PROB_COLUMNS) + 6)
        return [
            self.file,
            self.source,
            self.patient_id,
            "" if self.true_grade is None or self.true_grade < 0 else self.true_grade,
            *decided,
            *(_feature(v) for v in (self.quality or [math.nan] * len(FEATURES))),
            self.error,
            *self.extra.values(),
        ]


def _feature(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}"


def write_predictions(path: str | Path, rows: Iterable[PredictionRow]) -> Path:
    """Write ``rows`` as CSV (``COLUMNS`` plus the first row's ``extra`` keys), atomically."""
    rows = list(rows)
    extra = list(rows[0].extra) if rows else []
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, *extra])
        writer.writerows(row.cells() for row in rows)
    return Path(path)


def ungradable_summary(rows: Sequence[PredictionRow]) -> str:
    """How many images were graded and the ungradable rate (imageability, as clinics report it).

    Args:
        rows: one per input image.
    """
    refused = sum(1 for row in rows if row.error)
    share = refused / len(rows) if rows else 0.0
    return f"graded {len(rows) - refused}, ungradable or unreadable {refused} ({share:.1%})"
