"""Messidor-2: ADCIS images with Krause et al.'s adjudicated grades (``messidor_data.csv``).

Images in one folder (``IMAGES/``), ``IM00xxxx.JPG`` (the Extension part) and
``YYYYMMDD_NNNNN_0x00_PP.png`` (the Original part); the sheet lists them as ``.jpg`` where the
download has ``.JPG``, so names are matched case-insensitively. Images the adjudicators marked
ungradable are excluded (with that reason in split.csv); both eyes of an exam (the pairs sheet
``messidor-2.csv``, one exam per row, ``left;right``) share one patient id so they never straddle
splits.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import IMAGE_SUFFIXES, write_rgb
from drgrade.data.sources.common import Exclusion, Record, Source, SourceData
from drgrade.data.synthetic import draws_dme, grade_sequence, render_fundus, seeded_rng, write_mask

log = logging.getLogger(__name__)

SHEET = "messidor_data.csv"
PAIRS = "messidor-2.csv"
IMAGE_DIRS = ("IMAGES", "images", "Images", ".")
#: The adjudicated per-grade counts of the gradable images, used as synthetic class frequencies.
COUNTS = (1017, 270, 347, 75, 35)


def _image_dir(root: Path) -> Path:
    for name in IMAGE_DIRS:
        folder = root / name
        if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
    return root


def _exams(path: Path, problems: list[str]) -> dict[str, tuple[str, str]]:
    """Lower-cased image name -> (exam id, eye) from the exam-pairs sheet (one exam per row).

    The sheet is read leniently (``;`` or ``,`` separated, header optional) because its
    distributed form has varied; any cell that looks like an image name counts, the first of a
    row being the left eye and the second the right (the sheet's ``left;right`` header).
    """
    exams: dict[str, tuple[str, str]] = {}
    if not path.is_file():
        log.warning("%s not found: each Messidor-2 image becomes its own patient group", path)
        return exams
    text = common.read_sheet_text(path, problems) or ""
    for number, line in enumerate(text.splitlines(), start=1):
        cells = [c.strip() for c in line.replace(",", ";").split(";")]
        for cell, eye in zip(cells, ("left", "right"), strict=False):
            if Path(cell).suffix.lower() in IMAGE_SUFFIXES:
                exams[cell.lower()] = (f"messidor:exam{number}", eye)
    return exams


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """The gradable images with their adjudicated grades; the ungradable ones as exclusions."""
    root = common.source_root(root, "Messidor-2")
    problems: list[str] = []
    image_dir = _image_dir(root)
    files = {p.name.lower(): p for p in image_dir.iterdir() if p.is_file()}
    exams = _exams(root / PAIRS, problems)
    records: list[Record] = []
    excluded: list[Exclusion] = []
    columns = ("image_id", "adjudicated_dr_grade", "adjudicated_gradable")
    for where, image_id, row in common.keyed_rows(
        root / SHEET, columns, "image_id", problems, fold=str.lower
    ):
        key = image_id.lower()
        path = files.get(key)
        patient, eye = exams.get(key, (f"messidor:{key}", ""))
        if row["adjudicated_gradable"] in ("0", "0.0"):
            ungradable = Record(
                path or image_dir / image_id,
                common.UNKNOWN,
                "messidor2",
                patient,
                eye=eye,
                gradability="reject",
            )
            reason = "ungradable by the adjudicators (adjudicated_gradable 0)"
            excluded.append(Exclusion(ungradable, "dataset", reason))
            continue
        grade = common.parse_grade(row["adjudicated_dr_grade"], where, problems)
        if grade is None:
            continue
        if path is None:
            problems.append(f"{where}: no image named {image_id!r} in {image_dir}")
            continue
        dme = common.parse_dme(row.get("adjudicated_dme", ""), where, problems)
        records.append(Record(path, grade, "messidor2", patient, eye=eye, dme=dme, gradability="gradable"))
    return common.finish_source(records, problems, verify_images, root, excluded)


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """The published layout with synthetic photographs.

    ``IMAGES/`` with both name forms, the grades sheet (a few ungradable rows, ``.jpg`` lower-cased
    as in the real one; ``adjudicated_dme`` 1 where exudates were drawn near the macula) and the
    exam-pairs sheet (``left;right``).
    """
    root = out / SOURCE.folder
    (root / "IMAGES").mkdir(parents=True, exist_ok=True)
    rows, names = [], []
    for i, grade in enumerate(tqdm(grade_sequence(num, COUNTS, seed, 1), desc="synth messidor2")):
        rng = seeded_rng(seed, 1, i)
        exam = i // 2
        if exam % 3 == 0:  # the "Extension" part of Messidor-2 uses IM00xxxx.JPG names
            stored, listed = f"IM{4000 + i:06d}.JPG", f"IM{4000 + i:06d}.jpg"
        else:
            stored = listed = f"2005{1000 + exam % 300:04d}_{40000 + exam:05d}_0{i % 2}00_PP.png"
        ungradable = rng.random() < 0.02 or (i == 2 and num > 4)
        dme = draws_dme(grade, seed, 1, i)
        image, mask = render_fundus(grade, size, rng, dme=dme)
        if ungradable:  # ungradable photographs are badly exposed
            image = (image * 0.25).astype(np.uint8)
        write_rgb(root / "IMAGES" / stored, image)
        write_mask(root / common.MASK_DIR / f"{Path(stored).stem}.png", mask)
        rows.append(
            (listed, "" if ungradable else grade, "" if ungradable else int(dme), 0 if ungradable else 1)
        )
        names.append(stored)
    with (root / SHEET).open("w", newline="") as f:
        csv.writer(f).writerows(
            [("image_id", "adjudicated_dr_grade", "adjudicated_dme", "adjudicated_gradable"), *rows]
        )
    pairs = [f"{names[i]};{names[i + 1]}" for i in range(0, len(names) - 1, 2)]
    (root / PAIRS).write_text("left;right\n" + "\n".join(pairs) + "\n")
    return root


SOURCE = Source(
    name="messidor2",
    folder="messidor2",
    marker=SHEET,
    read=read,
    write_synthetic=write_synthetic,
    download="Messidor-2 images (ADCIS, https://www.adcis.net/en/third-party/messidor2/, licence form):\n"
    "    IMAGES/ and messidor-2.csv (exam pairs)  ->  {data}/messidor2/\n"
    '  Messidor-2 adjudicated grades (Krause et al. 2018; Kaggle dataset "messidor2"\n'
    "  by Google Brain): messidor_data.csv  ->  {data}/messidor2/",
    patients=True,
)
