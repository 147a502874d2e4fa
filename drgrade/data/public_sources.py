"""Readers for EyePACS (Kaggle 2015), IDRiD (ISBI 2018) and DDR (Li et al. 2019) in their native layouts.

Same contract as ``sources.py``: every problem (missing file or column, grade out of range,
unknown image, duplicate id) is collected with its file and row and raised at once, nothing
is changed on disk. Each reader records the dataset's published split in
``Record.official_split`` (``data.split: official`` uses it). IDRiD and DDR also publish pixel
lesion masks for a separate set of images; ``lesion_images`` returns those (grade unknown) for
``drgrade explain --lesion_images``.

Layouts (relative to the dataset root):

- EyePACS: ``trainLabels.csv`` (``image,level``) + ``train/<image>.jpeg``; optionally
  ``retinopathy_solution.csv`` (``image,level,Usage``) + ``test/``. ``10_left`` and ``10_right``
  are patient 10's two eyes.
- IDRiD: ``B. Disease Grading/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_001.jpg``,
  ``B. Disease Grading/2. Groundtruths/{a. IDRiD_Disease Grading_Training Labels.csv,
  b. IDRiD_Disease Grading_Testing Labels.csv}`` (``Image name``, ``Retinopathy grade``,
  ``Risk of macular edema `` with its trailing space); masks under ``A. Segmentation/``.
- DDR: ``DR_grading/{train,valid,test}/<name>.jpg`` with ``DR_grading/{train,valid,test}.txt``
  lines ``<name> <grade>`` (5 = ungradable: excluded and counted); masks under
  ``lesion_segmentation/{train,valid,test}/label/{EX,HE,MA,SE}/<stem>.tif``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from drgrade.data.sources import (
    Record,
    finish_source,
    first_sighting,
    parse_grade,
    read_csv_rows,
    source_root,
)

log = logging.getLogger(__name__)

EYEPACS_SHEETS = (("trainLabels.csv", "train", "train"), ("retinopathy_solution.csv", "test", "test"))
IDRID_GRADING = Path("B. Disease Grading")
IDRID_PARTS = (
    ("a. Training Set", "a. IDRiD_Disease Grading_Training Labels.csv", "train"),
    ("b. Testing Set", "b. IDRiD_Disease Grading_Testing Labels.csv", "test"),
)
IDRID_SEGMENTATION = Path("A. Segmentation")
#: IDRiD's lesion folders and file suffixes.
IDRID_LESIONS = (
    ("1. Microaneurysms", "MA"),
    ("2. Haemorrhages", "HE"),
    ("3. Hard Exudates", "EX"),
    ("4. Soft Exudates", "SE"),
)
DDR_SPLITS = (("train", "train"), ("valid", "val"), ("test", "test"))
DDR_LESIONS = ("EX", "HE", "MA", "SE")
#: DDR's label for an image too poor to grade.
DDR_UNGRADABLE = 5
_EYE = re.compile(r"^(?P<patient>.+)_(left|right)$")


def _grade_and_image(
    label: str, image: Path | None, missing: str, where: str, problems: list[str]
) -> int | None:
    """The row's grade when both it and its image are good; otherwise None, each problem recorded.

    Args:
        label: the grade cell.
        image: the row's image file, None when the download lacks it.
        missing: what to say when it does.
        where: file and row, for the messages.
        problems: where problems are collected.
    """
    grade = parse_grade(label, where, problems)
    if image is None:
        problems.append(f"{where}: {missing}")
    return None if image is None else grade


def _files(folder: Path) -> dict[str, Path]:
    """Name -> path of a folder's files, from one directory scan (88,702 stat calls avoided)."""
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {entry.name: Path(entry.path) for entry in entries if entry.is_file()}


def read_eyepacs(root: str | Path, verify_images: bool = True) -> list[Record]:
    """EyePACS: the training sheet, and the test sheet with its images when both are present."""
    root = source_root(root, "EyePACS")
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    for sheet, folder, split in EYEPACS_SHEETS:
        path = root / sheet
        if split == "test" and not path.is_file():
            continue  # the test labels are optional
        files = _files(root / folder)
        for line, row in enumerate(read_csv_rows(path, ("image", "level"), problems), start=2):
            where = f"{path} row {line}"
            name = row["image"]
            if not name:
                problems.append(f"{where}: empty image")
                continue
            if not first_sighting(name, f"image {name!r}", line, where, seen, problems):
                continue
            image = files.get(f"{name}.jpeg")
            missing = f"no image {root / folder / (name + '.jpeg')} for {name!r}"
            grade = _grade_and_image(row["level"], image, missing, where, problems)
            if grade is None:
                continue
            eye = _EYE.match(name)
            patient = eye["patient"] if eye else name
            records.append(Record(image, grade, "eyepacs", f"eyepacs:{patient}", official_split=split))
    return finish_source(records, problems, verify_images)


def read_idrid(root: str | Path, verify_images: bool = True) -> list[Record]:
    """IDRiD disease grading: the training and testing sheets with their images."""
    root = source_root(root, "IDRiD")
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    for folder, sheet, split in IDRID_PARTS:
        path = root / IDRID_GRADING / "2. Groundtruths" / sheet
        files = {p.stem: p for p in _files(root / IDRID_GRADING / "1. Original Images" / folder).values()}
        for line, row in enumerate(
            read_csv_rows(path, ("Image name", "Retinopathy grade"), problems), start=2
        ):
            where = f"{path} row {line}"
            name = row["Image name"]
            if not name:
                continue  # the published sheets end in blank rows
            if not first_sighting(name, f"image {name!r}", line, where, seen, problems):
                continue
            image = files.get(Path(name).stem)
            missing = f"no image {name!r} in {root / IDRID_GRADING / '1. Original Images' / folder}"
            grade = _grade_and_image(row["Retinopathy grade"], image, missing, where, problems)
            if grade is None:
                continue
            records.append(Record(image, grade, "idrid", f"idrid:{name}", official_split=split))
    return finish_source(records, problems, verify_images)


def read_ddr(root: str | Path, verify_images: bool = True) -> list[Record]:
    """DDR grading: train / valid / test lists of ``<name> <grade>``; grade 5 is ungradable."""
    root = source_root(root, "DDR")
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    ungradable = 0
    for folder, split in DDR_SPLITS:
        path = root / "DR_grading" / f"{folder}.txt"
        if not path.is_file():
            problems.append(f"{path}: file not found")
            continue
        files = _files(root / "DR_grading" / folder)
        for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            where = f"{path} line {line}"
            cells = text.split()
            if not cells:
                continue
            if len(cells) != 2:
                problems.append(f"{where}: expected '<image name> <grade>', got {text!r}")
                continue
            name, label = cells
            if not first_sighting(name, f"image {name!r}", line, where, seen, problems):
                continue
            if label == str(DDR_UNGRADABLE):
                ungradable += 1
                continue
            image = files.get(name)
            missing = f"no image {root / 'DR_grading' / folder / name}"
            grade = _grade_and_image(label, image, missing, where, problems)
            if grade is None:
                continue
            records.append(Record(image, grade, "ddr", f"ddr:{Path(name).stem}", official_split=split))
    if ungradable:
        log.info("DDR: excluded %d ungradable image(s) (grade %d)", ungradable, DDR_UNGRADABLE)
    return finish_source(records, problems, verify_images)


def _lesion_record(image: Path, masks: list[Path], source: str) -> Record:
    return Record(image, -1, source, f"{source}:{image.stem}", masks=tuple(masks))


def idrid_lesion_images(root: str | Path) -> list[Record]:
    """IDRiD segmentation images with their MA / HE / EX / SE masks (those that exist per image)."""
    root = Path(root) / IDRID_SEGMENTATION
    out = []
    for folder in ("a. Training Set", "b. Testing Set"):
        for image in sorted((root / "1. Original Images" / folder).glob("*.jpg")):
            labels = root / "2. All Segmentation Groundtruths" / folder
            masks = [labels / lesion / f"{image.stem}_{code}.tif" for lesion, code in IDRID_LESIONS]
            out.append(_lesion_record(image, [m for m in masks if m.is_file()], "idrid"))
    return out


def ddr_lesion_images(root: str | Path) -> list[Record]:
    """DDR lesion-segmentation images with their EX / HE / MA / SE masks."""
    root = Path(root) / "lesion_segmentation"
    out = []
    for folder in ("train", "valid", "test"):
        for image in sorted((root / folder / "image").glob("*.jpg")):
            masks = [root / folder / "label" / code / f"{image.stem}.tif" for code in DDR_LESIONS]
            out.append(_lesion_record(image, [m for m in masks if m.is_file()], "ddr"))
    return out


#: Sources with pixel lesion masks on images of their own.
LESION_IMAGES = {"idrid": idrid_lesion_images, "ddr": ddr_lesion_images}
