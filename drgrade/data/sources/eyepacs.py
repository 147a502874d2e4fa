"""EyePACS (Kaggle 2015 "diabetic-retinopathy-detection"): ``trainLabels.csv`` + ``train/<image>.jpeg``.

Optionally the test labels ``retinopathy_solution.csv`` (``image,level,Usage``) with ``test/``.
``10_left`` and ``10_right`` are patient 10's two eyes; the training and test parts number their
patients apart (no patient is in both). The published split is kept for ``data.split: official``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import Record, Source, SourceData
from drgrade.data.synthetic import grade_sequence, render_fundus, seeded_rng

#: (sheet, image folder, published split); the test part is optional.
SHEETS = (("trainLabels.csv", "train", "train"), ("retinopathy_solution.csv", "test", "test"))
#: The published per-grade counts of the training part, used as synthetic class frequencies.
COUNTS = (25810, 2443, 5292, 873, 708)
_EYE = re.compile(r"^(?P<patient>.+)_(?P<eye>left|right)$")


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """The training sheet, and the test sheet with its images when both are present."""
    root = common.source_root(root, "EyePACS")
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}  # no image may be in both sheets
    for sheet, folder, split in SHEETS:
        path = root / sheet
        if split == "test" and not path.is_file():
            continue  # the test labels are optional
        files = common.files_in(root / folder)
        for where, name, row in common.keyed_rows(path, ("image", "level"), "image", problems, seen):
            image = files.get(f"{name}.jpeg")
            missing = f"no image {root / folder / (name + '.jpeg')} for {name!r}"
            grade = common.grade_and_image(row["level"], image, missing, where, problems)
            if grade is None:
                continue
            eye = _EYE.match(name)
            patient, side = (eye["patient"], eye["eye"]) if eye else (name, "")
            patient_id = f"eyepacs:{patient}"
            records.append(Record(image, grade, "eyepacs", patient_id, official_split=split, eye=side))
    return common.finish_source(records, problems, verify_images)


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """``trainLabels.csv`` + ``train/<n>_<eye>.jpeg`` and, for a fifth of the patients, the test part.

    Both eyes of a patient are written, the second eye's grade within one of the first's; the test
    sheet has the published ``Usage`` column (Public / Private).
    """
    root = out / SOURCE.folder
    patients = max(num // 2, 5)
    rows: dict[str, list] = {"train": [], "test": []}
    for k, grade in enumerate(tqdm(grade_sequence(patients, COUNTS, seed, 2), desc="synth eyepacs")):
        part = "test" if k % 5 == 4 else "train"
        rng = seeded_rng(seed, 2, k)
        other = int(np.clip(grade + rng.choice([-1, 0, 0, 1]), 0, 4))
        for eye, eye_grade in (("left", grade), ("right", other)):
            name = f"{10 + 3 * k}_{eye}"
            image, _ = render_fundus(eye_grade, size, rng)
            write_rgb(root / part / f"{name}.jpeg", image)
            rows[part].append(
                [name, eye_grade] + (["Public" if k % 2 else "Private"] if part == "test" else [])
            )
    with (root / SHEETS[0][0]).open("w", newline="") as f:
        csv.writer(f).writerows([("image", "level"), *rows["train"]])
    with (root / SHEETS[1][0]).open("w", newline="") as f:
        csv.writer(f).writerows([("image", "level", "Usage"), *rows["test"]])
    return root


SOURCE = Source(
    name="eyepacs",
    folder="eyepacs",
    marker="trainLabels.csv",
    read=read,
    write_synthetic=write_synthetic,
    download='EyePACS (Kaggle competition "diabetic-retinopathy-detection"): trainLabels.csv, train/,\n'
    "    optionally retinopathy_solution.csv and test/  ->  {data}/eyepacs/",
    patients=True,
    aliases=("diabetic-retinopathy-detection",),
)
