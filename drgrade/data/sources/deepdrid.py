"""DeepDRiD (ISBI 2020; Liu et al., Patterns 2022): regular fundus photographs, two fields per eye.

``regular_fundus_images/regular-fundus-{training,validation}/Images/<pid>/<pid>_{l1,l2,r1,r2}.jpg``
with one sheet per part, ``regular-fundus-{training,validation}.csv`` in the part's folder:
``patient_id,image_id,image_path,Overall quality,left_eye_DR_Level,right_eye_DR_Level,
patient_DR_Level,Clarity,Field definition,Artifact``. A photograph's grade is in the column of
its eye (``l``: ``left_eye_DR_Level``), the other eye's column being empty; ``image_path`` is
written with Windows backslashes, so images are found by patient and
image id instead. Four photographs per patient (two fields of each eye): the natural test of exam
decisions. Photographs the graders marked of poor overall quality (``Overall quality`` 0) are
excluded with their clarity, field and artefact scores as the reason; that label is also each
photograph's gradability (0 ``reject``, 1 ``gradable``), so ``drgrade gate`` measures the gate
against it and the ``quality`` model can learn from it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import Exclusion, Record, Source, SourceData
from drgrade.data.synthetic import grade_sequence, render_fundus, seeded_rng

REGULAR = Path("regular_fundus_images")
#: (part folder, published split) of each labelled part.
PARTS = (("regular-fundus-training", "train"), ("regular-fundus-validation", "val"))
COLUMNS = ("patient_id", "image_id", "Overall quality", "left_eye_DR_Level", "right_eye_DR_Level")
#: Quality scores given in the reason of an excluded photograph.
QUALITY = ("Clarity", "Field definition", "Artifact")
#: The synthetic layout's grade frequencies (chosen for the tests; not DeepDRiD's own counts).
COUNTS = (4, 2, 2, 1, 1)
#: The published sheets' columns.
HEADER = (
    "patient_id",
    "image_id",
    "image_path",
    "Overall quality",
    "left_eye_DR_Level",
    "right_eye_DR_Level",
    "patient_DR_Level",
    *QUALITY,
)
_IMAGE = re.compile(r"^(?P<patient>.+)_(?P<eye>[lr])(?P<field>[12])$")


def sheet(root: Path, part: str) -> Path:
    """The label sheet of a part (``regular-fundus-training.csv`` in its folder)."""
    return root / REGULAR / part / f"{part}.csv"


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """Both labelled parts; each photograph keyed by its image id, graded in its eye's column."""
    root = common.source_root(root, "DeepDRiD")
    problems: list[str] = []
    records: list[Record] = []
    excluded: list[Exclusion] = []
    seen: dict[str, int] = {}
    for part, split in PARTS:
        for where, image_id, row in common.keyed_rows(sheet(root, part), COLUMNS, "image_id", problems, seen):
            if not (
                common.plain_name(row["patient_id"], where, problems)
                and common.plain_name(image_id, where, problems)
            ):
                continue  # a folder name must not lead out of the dataset
            named = _IMAGE.match(image_id)
            if named is None:
                problems.append(f"{where}: image_id {image_id!r} is not <patient>_<l|r><1|2>")
                continue
            eye = "left" if named["eye"] == "l" else "right"
            path = root / REGULAR / part / "Images" / row["patient_id"] / f"{image_id}.jpg"
            record = Record(
                path,
                common.UNKNOWN,
                "deepdrid",
                f"deepdrid:{row['patient_id']}",
                official_split=split,
                eye=eye,
                field=named["field"],
                gradability="reject" if row["Overall quality"] in ("0", "0.0") else "gradable",
            )
            if record.gradability == "reject":
                scores = ", ".join(f"{name} {row.get(name, '')}" for name in QUALITY)
                excluded.append(Exclusion(record, "dataset", f"poor quality by the graders ({scores})"))
                continue
            image = path if path.is_file() else None
            missing = f"no image {path} for image_id {image_id!r}"
            grade = common.grade_and_image(row[f"{eye}_eye_DR_Level"], image, missing, where, problems)
            if grade is not None:
                records.append(replace(record, grade=grade))
    return common.finish_source(records, problems, verify_images, excluded=excluded)


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """The published layout with synthetic photographs: four per patient (``l1 l2 r1 r2``), 80% training.

    The right eye's grade is within one of the left's; both fields of an eye share its grade. A few
    photographs are of poor quality (darkened, ``Overall quality`` 0); ``image_path`` is written
    with backslashes as published.
    """
    root = out / SOURCE.folder
    patients = max(num // 4, 5)
    cut = round(0.8 * patients)
    rows: dict[str, list] = {part: [] for part, _ in PARTS}
    for k, grade in enumerate(tqdm(grade_sequence(patients, COUNTS, seed, 6), desc="synth deepdrid")):
        part = PARTS[int(k >= cut)][0]
        rng = seeded_rng(seed, 6, k)
        patient = str(100 + k)
        grades = {"l": grade, "r": int(np.clip(grade + rng.choice([-1, 0, 0, 1]), 0, 4))}
        for eye in ("l", "r"):
            for field in ("1", "2"):
                image_id = f"{patient}_{eye}{field}"
                image, _ = render_fundus(grades[eye], size, rng)
                poor = rng.random() < 0.04
                if poor:
                    image = (image * 0.25).astype(np.uint8)
                write_rgb(root / REGULAR / part / "Images" / patient / f"{image_id}.jpg", image)
                levels = [grades[eye], ""] if eye == "l" else ["", grades[eye]]
                rows[part].append(
                    [
                        patient,
                        image_id,
                        f"\\{REGULAR}\\{part}\\Images\\{patient}\\{image_id}.jpg",
                        0 if poor else 1,
                        *levels,
                        max(grades.values()),
                        1 if poor else 4,
                        4,
                        1 if poor else 5,
                    ]
                )
    for part, _ in PARTS:
        with sheet(root, part).open("w", newline="") as f:
            csv.writer(f).writerows([HEADER, *rows[part]])
    return root


SOURCE = Source(
    name="deepdrid",
    folder="deepdrid",
    marker=str(REGULAR),
    read=read,
    write_synthetic=write_synthetic,
    download="DeepDRiD (github.com/deepdrdoc/DeepDRiD): regular_fundus_images/  ->  {data}/deepdrid/",
    patients=True,
)
