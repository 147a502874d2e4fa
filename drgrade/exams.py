"""Exams: a patient's photographs grouped by eye, decided per eye and per patient. Torch-free.

A screening programme decides about patients (IDx-DR and EyeArt take two fields per eye and answer
per eye and per patient), so every prediction file gets an ``exams.csv`` beside it:

- **per eye**: the worst gradable photograph decides (worst: referred first, then the highest
  P(referable)). Referred: the eye is ``refer``; not referred: ``no refer``; too uncertain for the
  model to decide (its action is ``to grader``): ``insufficient``, a grader must look. An eye
  whose photographs are all ungradable or unreadable is ``insufficient`` too (rescan or grade).
- **per patient**: ``refer`` if either eye refers; else ``insufficient`` if an eye is; else
  ``no refer``.

Patients and eyes come from the dataset's ids (EyePACS ``<n>_left``, Messidor-2 exam pairs,
DeepDRiD ``<pid>_l1``); for a folder, from a manifest CSV (``file,patient_id,eye,field``) or a
file-name pattern (``exam_ids``). Without either, each photograph is its own patient.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from drgrade.data.sources.common import read_csv_rows
from drgrade.decision.actions import REFER, TO_GRADER, screener_reason
from drgrade.errors import OptionError
from drgrade.files import atomic_open, neutralise
from drgrade.grades import REFERRAL_LEVELS

INSUFFICIENT = "insufficient"
NO_REFER = "no refer"
EYES = ("left", "right")
#: How a manifest or a pattern may write an eye.
EYE_WORDS = {"left": "left", "l": "left", "os": "left", "right": "right", "r": "right", "od": "right"}
#: exams.csv's columns: the patient, each eye's decision, the patient's, why, and the truth.
EXAM_COLUMNS = (
    "patient_id",
    "source",
    "photographs",
    "left",
    "right",
    "eye_unknown",
    "decision",
    "vtdr",
    "reasons",
    "true_worst_grade",
    "true_dme",
)


@dataclass(frozen=True)
class ExamIds:
    """Where a photograph belongs: its patient, eye (``left``, ``right`` or empty) and field."""

    patient_id: str
    eye: str = ""
    field: str = ""


def eye_word(value: str, where: str) -> str:
    """``left`` / ``right`` from the ways manifests write an eye (empty stays empty)."""
    value = value.strip().lower()
    if value and value not in EYE_WORDS:
        raise OptionError(f"{where}: eye {value!r} is not one of {sorted(EYE_WORDS)}")
    return EYE_WORDS.get(value, "")


def read_manifest(path: str | Path) -> dict[str, ExamIds]:
    """A folder's manifest (``file,patient_id,eye,field``) by file name; every problem at once.

    Args:
        path: the CSV; ``file`` is the image's name (or a path ending in it), ``field`` optional.
    """
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"exam manifest {path} not found")
    problems: list[str] = []
    found: dict[str, ExamIds] = {}
    seen: set[str] = set()
    rows = read_csv_rows(path, ("file", "patient_id", "eye"), problems)  # encodings, huge cells named
    if not rows:
        raise OptionError(f"exam manifest: {'; '.join(problems)}")
    for line, row in rows:
        where = f"exam manifest {path} row {line}"
        name = Path(row["file"]).name
        if not name or not row["patient_id"]:
            problems.append(f"{where}: empty file or patient_id")
            continue
        if name in seen:
            problems.append(f"{where}: {name!r} listed twice")
            continue
        seen.add(name)
        try:
            eye = eye_word(row["eye"], where)
        except OptionError as error:
            problems.append(str(error))
            continue
        found[name] = ExamIds(row["patient_id"], eye, row.get("field") or "")
    if problems:
        raise OptionError("; ".join(problems))
    return found


def exam_pattern(pattern: str) -> re.Pattern:
    """A file-name pattern with named groups ``patient`` and ``eye`` (``field`` optional)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise OptionError(f"exam pattern {pattern!r} is not a regular expression ({error})") from None
    if not {"patient", "eye"} <= set(compiled.groupindex):
        raise OptionError(
            f"exam pattern {pattern!r} needs the named groups (?P<patient>...) and (?P<eye>...)"
        )
    return compiled


def exam_ids(
    files: Sequence[str | Path], manifest: str | Path | None = None, pattern: str | None = None
) -> list[ExamIds | None]:
    """Each file's patient and eye from a manifest or a file-name pattern (None: neither names it).

    Args:
        files: the photographs.
        manifest: a ``file,patient_id,eye,field`` CSV.
        pattern: a regular expression matched against each file's stem, e.g.
            ``(?P<patient>[0-9]+)_(?P<eye>left|right)`` for EyePACS-style names.
    """
    if manifest is not None and pattern is not None:
        raise OptionError("give an exam manifest or an exam pattern, not both")
    if manifest is not None:
        listed = read_manifest(manifest)
        return [listed.get(Path(f).name) for f in files]
    if pattern is None:
        return [None] * len(files)
    compiled = exam_pattern(pattern)
    found: list[ExamIds | None] = []
    for f in files:
        match = compiled.fullmatch(Path(f).stem)
        if match is None:
            found.append(None)
            continue
        field = match.groupdict().get("field") or ""
        found.append(ExamIds(match["patient"], eye_word(match["eye"], f"{Path(f).name}"), field))
    return found


# -- deciding ---------------------------------------------------------------------------------------
@dataclass
class Exam:
    """One patient's exam: each eye's decision and reason, the patient's, and the truth when known.

    ``vtdr`` is 1 when a graded photograph is flagged vision-threatening (its ``vtdr`` column:
    severe or worse by score, or DME): the urgent referral. ``true_dme`` is 1 when a photograph's
    reference says DME, 0 when the source grades DME and none has it, None when it grades none.
    """

    patient_id: str
    source: str
    photographs: int
    eyes: dict[str, tuple[str, str]]
    decision: str
    true_worst_grade: int | None
    vtdr: bool = False
    true_dme: int | None = None

    def truth(self, level: str) -> bool | None:
        """Whether the patient has ``referable`` DR (moderate+ or DME) or ``vtdr`` (severe+ or DME)."""
        if self.true_worst_grade is None:
            return None
        return self.true_worst_grade >= REFERRAL_LEVELS[level] or self.true_dme == 1

    def cells(self) -> list[object]:
        """The row in ``EXAM_COLUMNS`` order."""
        reasons = "; ".join(f"{eye or 'eye unknown'}: {why}" for eye, (_, why) in self.eyes.items())
        return [
            self.patient_id,
            self.source,
            self.photographs,
            *(self.eyes.get(eye, ("", ""))[0] for eye in ("left", "right", "")),
            self.decision,
            int(self.vtdr),
            reasons,
            "" if self.true_worst_grade is None else self.true_worst_grade,
            "" if self.true_dme is None else self.true_dme,
        ]


def _worst_first(row: dict[str, str]) -> tuple[bool, float]:
    return row["action"] == REFER, float(row["p_referable"])


def eye_decision(photographs: Sequence[dict[str, str]]) -> tuple[str, str]:
    """(decision, reason) of one eye from its prediction rows (see the module docstring)."""
    graded = [row for row in photographs if row["grade"] != ""]
    if not graded:
        reasons = sorted({screener_reason(row["error"])[0] for row in photographs})
        return INSUFFICIENT, f"no gradable photograph ({', '.join(reasons)})"
    worst = max(graded, key=_worst_first)
    name, score = Path(worst["file"]).name, float(worst["p_referable"])
    if worst["action"] == TO_GRADER:
        return (
            INSUFFICIENT,
            f"{name} too uncertain for the model (P(referable) {score:.3f}): a grader decides",
        )
    return worst["action"], f"{worst['action']} by {name} (P(referable) {score:.3f})"


def patient_decision(eyes: Iterable[str]) -> str:
    """``refer`` if either eye refers; else ``insufficient`` if one is; else ``no refer``."""
    eyes = list(eyes)
    if REFER in eyes:
        return REFER
    return INSUFFICIENT if INSUFFICIENT in eyes else NO_REFER


def patient_key(row: dict[str, str]) -> str:
    """The patient a prediction row belongs to (its own file when no patient is named)."""
    return row["patient_id"] or row["file"]


def decide_exams(rows: Sequence[dict[str, str]]) -> list[Exam]:
    """One exam per patient, in order of first appearance, from prediction-file rows (``COLUMNS`` keys).

    Args:
        rows: a prediction file's rows as dictionaries (``read_rows``, or ``PredictionRow.as_dict``).
    """
    patients: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        patients.setdefault(patient_key(row), []).append(row)
    exams = []
    for patient, photographs in patients.items():
        by_eye: dict[str, list[dict[str, str]]] = {}
        for row in photographs:
            by_eye.setdefault(row["eye"], []).append(row)
        eyes = {eye: eye_decision(by_eye[eye]) for eye in sorted(by_eye, key=lambda e: (e == "", e))}
        truths = [int(row["true_grade"]) for row in photographs if row["true_grade"] != ""]
        dme = [int(row["true_dme"]) for row in photographs if row["true_dme"] != ""]
        exams.append(
            Exam(
                patient,
                photographs[0]["source"],
                len(photographs),
                eyes,
                patient_decision(decision for decision, _ in eyes.values()),
                max(truths) if truths else None,
                any(row["vtdr"] == "1" for row in photographs),
                max(dme) if dme else None,
            )
        )
    return exams


def exams_path(predictions: str | Path) -> Path:
    """Where the exams of a prediction file go, beside it.

    ``exams.csv`` beside ``predictions.csv``, else ``<stem>.exams.csv``: two prediction files in one
    folder never share (and overwrite) one exams file.
    """
    predictions = Path(predictions)
    name = "exams.csv" if predictions.name == "predictions.csv" else f"{predictions.stem}.exams.csv"
    return predictions.with_name(name)


def write_exams(path: str | Path, rows: Sequence[dict[str, str]]) -> list[Exam]:
    """Decide the exams of a prediction file's rows and write them to ``path`` (atomically)."""
    exams = decide_exams(rows)
    with atomic_open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(EXAM_COLUMNS)
        writer.writerows([neutralise(cell) for cell in exam.cells()] for exam in exams)
    return exams


def exam_summary(exams: Sequence[Exam]) -> str:
    """``exams: 12 patients, refer 3, no refer 8, insufficient 1`` for the console."""
    counts = {d: sum(e.decision == d for e in exams) for d in (REFER, NO_REFER, INSUFFICIENT)}
    return f"exams: {len(exams)} patient(s), " + ", ".join(f"{d} {n}" for d, n in counts.items())
