"""The one prediction-row schema.

Shared by ``predict``, evaluation, ``explain`` and ``python -m drgrade.deploy``: the same column names
everywhere, probabilities named by grade.

Torch-free on purpose: the ONNX runner imports it without PyTorch installed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drgrade.files import atomic_open
from drgrade.grades import GRADE_NAMES, GRADES, REFERABLE_FROM

#: One probability column per grade: ``p_no``, ``p_mild``, ``p_moderate``, ``p_severe``, ``p_proliferative``.
PROB_COLUMNS = tuple(f"p_{g.short}" for g in GRADES)
#: Every prediction file's columns, in order.
COLUMNS = ("file", "source", "true_grade", "grade", "grade_name", *PROB_COLUMNS, "referable", "error")


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
    """

    file: str
    probabilities: Sequence[float] | None = None
    grade: int | None = None
    true_grade: int | None = None
    source: str = ""
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def cells(self) -> list[object]:
        """The row's values in ``COLUMNS`` order, then ``extra``'s."""
        graded = self.grade is not None and self.probabilities is not None
        probabilities = [f"{p:.6f}" for p in self.probabilities] if graded else [""] * len(PROB_COLUMNS)
        return [
            self.file,
            self.source,
            "" if self.true_grade is None or self.true_grade < 0 else self.true_grade,
            self.grade if graded else "",
            GRADE_NAMES[self.grade] if graded else "",
            *probabilities,
            int(self.grade >= REFERABLE_FROM) if graded else "",
            self.error,
            *self.extra.values(),
        ]


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
