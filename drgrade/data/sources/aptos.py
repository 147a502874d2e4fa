"""APTOS 2019 Blindness Detection (Kaggle): ``train.csv`` and ``train_images/<id_code>.png``.

``train.csv`` has the columns ``id_code,diagnosis`` (grade 0-4).

3,662 labelled images (1805/370/999/193/295). No patient ids are published, so each image is
its own group: a patient who contributed two images can land in two splits, a known limitation
of this dataset (the duplicate check merges exact and near copies).
"""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import Record, Source, SourceData
from drgrade.data.synthetic import grade_sequence, render_fundus, seeded_rng, write_mask

SHEET = "train.csv"
IMAGES = "train_images"
#: The published per-grade counts (the paper's Table 1), used as the synthetic class frequencies.
COUNTS = (1805, 370, 999, 193, 295)


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """Every row of ``train.csv`` with its image; every problem reported at once."""
    root = common.source_root(root, "APTOS 2019")
    problems: list[str] = []
    records: list[Record] = []
    for where, image_id, row in common.keyed_rows(
        root / SHEET, ("id_code", "diagnosis"), "id_code", problems
    ):
        grade = common.parse_grade(row["diagnosis"], where, problems)
        if grade is None or not common.plain_name(image_id, where, problems):
            continue
        path = root / IMAGES / f"{image_id}.png"
        if not path.is_file():
            problems.append(f"{where}: no image {path} for id_code {image_id!r}")
            continue
        records.append(Record(path, grade, "aptos2019", f"aptos:{image_id}"))
    return common.finish_source(records, problems, verify_images, root)


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """The published layout with synthetic photographs (PNG, random hexadecimal ids) and lesion masks."""
    root = out / SOURCE.folder
    rows = []
    for i, grade in enumerate(tqdm(grade_sequence(num, COUNTS, seed, 0), desc="synth aptos2019")):
        image_id = f"{seeded_rng(seed, 0, i).bytes(6).hex()}"
        image, mask = render_fundus(grade, size, seeded_rng(seed, 0, i))
        write_rgb(root / IMAGES / f"{image_id}.png", image)
        write_mask(root / common.MASK_DIR / f"{image_id}.png", mask)
        rows.append((image_id, grade))
    with (root / SHEET).open("w", newline="") as f:
        csv.writer(f).writerows([("id_code", "diagnosis"), *rows])
    return root


SOURCE = Source(
    name="aptos2019",
    folder="aptos2019",
    marker=SHEET,
    read=read,
    write_synthetic=write_synthetic,
    download='APTOS 2019 Blindness Detection (Kaggle competition "aptos2019-blindness-detection"):\n'
    "    train.csv and train_images/  ->  {data}/aptos2019/ (or the folder as Kaggle names it)",
    aliases=("aptos2019-blindness-detection",),
)
