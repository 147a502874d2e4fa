"""EyeQ (Fu et al. 2019): image-quality labels of 28,792 EyePACS photographs, with their DR grades.

``Label_EyeQ_train.csv`` and ``Label_EyeQ_test.csv`` (header ``,image,quality,DR_grade``: an
unnamed row number, the EyePACS image name, quality 0 good / 1 usable / 2 reject, the EyePACS
grade) name photographs of the EyePACS download, so the root is an EyePACS folder holding the two
sheets: the training sheet's images in ``train/``, the test sheet's in ``test/``. Graders
rejected the quality-2 photographs: they are excluded from DR grading (listed, like Messidor-2's
ungradable ones) and are the "reject" class of the ``quality`` task and of ``drgrade gate``.
Patients are EyePACS's (``10_left`` and ``10_right`` are patient 10), so an EyeQ photograph and
its EyePACS copy group together.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import Exclusion, Record, Source, SourceData
from drgrade.data.synthetic import grade_sequence, render_fundus, seeded_rng

#: (sheet, image folder, published split).
SHEETS = (("Label_EyeQ_train.csv", "train", "train"), ("Label_EyeQ_test.csv", "test", "test"))
#: EyeQ's quality levels, in the order of the ``quality`` column's values.
LEVELS = ("good", "usable", "reject")
#: EyeQ's published quality counts (training sheet), the synthetic layout's class frequencies.
COUNTS = (8347, 1876, 2320)
_EYE = re.compile(r"^(?P<patient>.+)_(?P<eye>left|right)$")


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """The good and usable photographs with their DR grades; the rejected ones as exclusions."""
    root = common.source_root(root, "EyeQ")
    problems: list[str] = []
    records: list[Record] = []
    excluded: list[Exclusion] = []
    seen: dict[str, int] = {}
    for sheet, folder, split in SHEETS:
        files = common.files_in(root / folder)
        for where, name, row in common.keyed_rows(
            root / sheet, ("image", "quality", "DR_grade"), "image", problems, seen
        ):
            if row["quality"] not in ("0", "1", "2"):
                problems.append(
                    f"{where}: quality {row['quality']!r} is not 0 (good), 1 (usable) or 2 (reject)"
                )
                continue
            level = LEVELS[int(row["quality"])]
            eye = _EYE.match(Path(name).stem)
            patient = f"eyepacs:{eye['patient'] if eye else Path(name).stem}"
            side = eye["eye"] if eye else ""
            image = files.get(name)
            if level == "reject":
                record = Record(
                    image or root / folder / name,
                    common.UNKNOWN,
                    "eyeq",
                    patient,
                    official_split=split,
                    eye=side,
                    gradability=level,
                )
                excluded.append(Exclusion(record, "dataset", "rejected by the EyeQ graders (quality 2)"))
                continue
            grade = common.grade_and_image(
                row["DR_grade"], image, f"no image {root / folder / name}", where, problems
            )
            if grade is not None:
                records.append(
                    Record(image, grade, "eyeq", patient, official_split=split, eye=side, gradability=level)
                )
    return common.finish_source(records, problems, verify_images, excluded=excluded)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic photograph made ungradable the ways rejected ones are: dark, blurred or washed out."""
    kind = int(rng.integers(3))
    if kind == 0:
        return (image * 0.1).astype(np.uint8)
    if kind == 1:
        return cv2.GaussianBlur(image, (0, 0), image.shape[0] / 25)
    return np.clip(image * 0.4 + 170, 0, 255).astype(np.uint8)


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """The two sheets and their image folders, in EyeQ's proportions of the three levels.

    Good photographs as drawn, usable ones a little blurred, rejected ones degraded (``degrade``).
    """
    root = out / SOURCE.folder
    rows: dict[str, list] = {"train": [], "test": []}
    for i, level in enumerate(tqdm(grade_sequence(num, COUNTS, seed, 6), desc="synth eyeq")):
        rng = seeded_rng(seed, 6, i)
        grade = int(rng.integers(5))
        image, _ = render_fundus(grade, size, rng)
        if level == 1:
            image = cv2.GaussianBlur(image, (0, 0), 1.0)
        elif level == 2:
            image = degrade(image, rng)
        part = "test" if (i // 2) % 5 == 4 else "train"  # both eyes of a patient in one part
        name = f"{20 + i // 2}_{'left' if i % 2 == 0 else 'right'}.jpeg"
        write_rgb(root / part / name, image)
        rows[part].append([len(rows[part]), name, level, grade])
    for sheet, part, _ in SHEETS:
        with (root / sheet).open("w", newline="") as f:
            csv.writer(f).writerows([("", "image", "quality", "DR_grade"), *rows[part]])
    return root


SOURCE = Source(
    name="eyeq",
    folder="eyeq",
    marker=SHEETS[0][0],
    read=read,
    write_synthetic=write_synthetic,
    download="EyeQ quality labels (github.com/HzFu/EyeQ, data/Label_EyeQ_{{train,test}}.csv) over the\n"
    "    EyePACS photographs: the two sheets, train/ and test/  ->  {data}/eyeq/",
    patients=True,
)
