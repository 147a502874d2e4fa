"""IDRiD (ISBI 2018, IEEE DataPort, CC BY 4.0): the disease-grading part and the lesion-segmentation part.

Grading: ``B. Disease Grading/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_NNN.jpg``
with ``B. Disease Grading/2. Groundtruths/{a. IDRiD_Disease Grading_Training Labels.csv,
b. IDRiD_Disease Grading_Testing Labels.csv}`` (``Image name``, ``Retinopathy grade``,
``Risk of macular edema `` with its trailing space, then empty columns and blank rows). The
numbering restarts in each part (training ``IDRiD_001``..``IDRiD_413``, testing
``IDRiD_001``..``IDRiD_103``): they are different eyes, so images are keyed by part and name.
No patient ids are published. Segmentation: ``A. Segmentation/1. Original Images/<part>/`` with
MA / HE / EX / SE masks under ``A. Segmentation/2. All Segmentation Groundtruths/<part>/``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import Record, Source, SourceData
from drgrade.data.synthetic import draws_dme, grade_sequence, render_fundus, seeded_rng, write_mask

GRADING = Path("B. Disease Grading")
#: (image folder, sheet, published split) of each grading part.
PARTS = (
    ("a. Training Set", "a. IDRiD_Disease Grading_Training Labels.csv", "train"),
    ("b. Testing Set", "b. IDRiD_Disease Grading_Testing Labels.csv", "test"),
)
SEGMENTATION = Path("A. Segmentation")
#: The lesion folders and file suffixes of the segmentation part.
LESIONS = (
    ("1. Microaneurysms", "MA"),
    ("2. Haemorrhages", "HE"),
    ("3. Hard Exudates", "EX"),
    ("4. Soft Exudates", "SE"),
)
#: The published per-grade counts (both parts), used as synthetic class frequencies.
COUNTS = (168, 25, 168, 93, 62)


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """Both grading sheets with their images; an image is identified by its part and name."""
    root = common.source_root(root, "IDRiD")
    problems: list[str] = []
    records: list[Record] = []
    columns = ("Image name", "Retinopathy grade")
    for folder, sheet, split in PARTS:
        path = root / GRADING / "2. Groundtruths" / sheet
        images = root / GRADING / "1. Original Images" / folder
        files = {p.stem: p for p in common.files_in(images).values()}
        # names restart in each part (they are other eyes): each sheet has keys of its own
        for where, name, row in common.keyed_rows(path, columns, "Image name", problems, blank_ok=True):
            image = files.get(Path(name).stem)
            missing = f"no image {name!r} in {images}"
            grade = common.grade_and_image(row["Retinopathy grade"], image, missing, where, problems)
            if grade is None:
                continue
            # "Risk of macular edema " (0-2, its header with a trailing space, read stripped)
            dme = common.parse_dme(row.get("Risk of macular edema", ""), where, problems, present_from=2)
            patient = f"idrid:{split}/{name}"
            records.append(Record(image, grade, "idrid", patient, official_split=split, dme=dme))
    return common.finish_source(records, problems, verify_images)


def lesion_images(root: str | Path) -> list[Record]:
    """The segmentation images with their MA / HE / EX / SE masks (those that exist per image)."""
    root = Path(root) / SEGMENTATION
    out = []
    for folder, _, split in PARTS:
        for image in sorted((root / "1. Original Images" / folder).glob("*.jpg")):
            labels = root / "2. All Segmentation Groundtruths" / folder
            masks = [labels / lesion / f"{image.stem}_{code}.tif" for lesion, code in LESIONS]
            patient = f"idrid:segmentation/{split}/{image.stem}"
            out.append(
                Record(image, common.UNKNOWN, "idrid", patient, masks=tuple(m for m in masks if m.is_file()))
            )
    return out


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """The published layout with synthetic photographs.

    Both grading parts (80% / 20%, each numbered from ``IDRiD_001`` as published, with the sheets'
    header quirks) and a segmentation part (two thirds training, numbered on across the parts as
    published; the generator's lesions as the haemorrhage masks).
    """
    root = out / SOURCE.folder
    grades = grade_sequence(num, COUNTS, seed, 3)
    cut = round(0.8 * num)
    for (folder, sheet, _), chosen in zip(PARTS, (range(cut), range(cut, num)), strict=True):
        rows = []
        for number, i in enumerate(tqdm(chosen, desc=f"synth idrid {folder}"), start=1):
            name = f"IDRiD_{number:03d}"
            dme = draws_dme(grades[i], seed, 3, i)
            image, _ = render_fundus(grades[i], size, seeded_rng(seed, 3, i), dme=dme)
            write_rgb(root / GRADING / "1. Original Images" / folder / f"{name}.jpg", image)
            # risk of macular edema: 2 exudates near the macula (DME), 1 exudates elsewhere, 0 none
            risk = 2 if dme else int(grades[i] >= 2)
            rows.append([name, grades[i], risk, "", ""])
        path = root / GRADING / "2. Groundtruths" / sheet
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open(
            "w", newline=""
        ) as f:  # the published sheets: trailing space, empty columns, blank rows
            csv.writer(f).writerows(
                [
                    ("Image name", "Retinopathy grade", "Risk of macular edema ", "", ""),
                    *rows,
                    ("", "", "", "", ""),
                ]
            )
    segmented = max(3, num // 10)
    for j in range(segmented):  # as published: training IDRiD_01..54, testing numbered on from 55
        name = f"IDRiD_{j + 1:02d}"
        folder = PARTS[int(j >= round(2 * segmented / 3))][0]
        image, mask = render_fundus(2 + j % 3, size, seeded_rng(seed, 3, 10**6 + j))
        write_rgb(root / SEGMENTATION / "1. Original Images" / folder / f"{name}.jpg", image)
        labels = root / SEGMENTATION / "2. All Segmentation Groundtruths" / folder
        write_mask(labels / LESIONS[1][0] / f"{name}_{LESIONS[1][1]}.tif", mask)
        write_mask(labels / LESIONS[0][0] / f"{name}_{LESIONS[0][1]}.tif", np.zeros_like(mask))
    return root


SOURCE = Source(
    name="idrid",
    folder="idrid",
    marker=str(GRADING),
    read=read,
    write_synthetic=write_synthetic,
    download='IDRiD (IEEE DataPort, "Indian Diabetic Retinopathy Image Dataset"): the folders\n'
    '    "A. Segmentation" and "B. Disease Grading"  ->  {data}/idrid/',
    lesion_images=lesion_images,
)
