"""DDR (Li et al. 2019, github nkicsl/DDR-dataset): ``DR_grading/{train,valid,test}/`` with their lists.

``DR_grading/{train,valid,test}.txt`` hold lines ``<name> <grade>``; grade 5 means ungradable
(excluded, with that reason in split.csv). The published three-way split is kept for
``data.split: official``. Lesion segmentation: ``lesion_segmentation/{train,valid,test}/image/``
with ``label/{EX,HE,MA,SE}/<stem>.tif`` masks. No patient ids are published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

import drgrade.data.sources.common as common
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import Exclusion, Record, Source, SourceData
from drgrade.data.synthetic import grade_sequence, render_fundus, seeded_rng, write_mask

#: (folder, published split) of the grading part.
SPLITS = (("train", "train"), ("valid", "val"), ("test", "test"))
LESIONS = ("EX", "HE", "MA", "SE")
#: DDR's label for an image too poor to grade.
UNGRADABLE = 5
#: The published per-grade counts, used as synthetic class frequencies.
COUNTS = (6266, 630, 4477, 236, 913)


def read(root: str | Path, verify_images: bool = True) -> SourceData:
    """The three grading lists with their images; grade-5 images as exclusions."""
    root = common.source_root(root, "DDR")
    problems: list[str] = []
    records: list[Record] = []
    excluded: list[Exclusion] = []
    seen: dict[str, str] = {}  # no image may be listed twice, in any of the three lists
    for folder, split in SPLITS:
        path = root / "DR_grading" / f"{folder}.txt"
        sheet = common.read_sheet_text(path, problems)
        if sheet is None:
            continue
        files = common.files_in(root / "DR_grading" / folder)
        for line, text in enumerate(sheet.splitlines(), start=1):
            where = f"{path} line {line}"
            cells = text.split()
            if not cells:
                continue
            if len(cells) != 2:
                problems.append(f"{where}: expected '<image name> <grade>', got {text!r}")
                continue
            name, label = cells
            if not common.plain_name(name, where, problems):
                continue
            if name in seen:
                problems.append(f"{where}: duplicate image {name!r} (first on {seen[name]})")
                continue
            seen[name] = where
            image_path = files.get(name, root / "DR_grading" / folder / name)
            if label == str(UNGRADABLE):
                record = Record(
                    image_path,
                    common.UNKNOWN,
                    "ddr",
                    f"ddr:{Path(name).stem}",
                    official_split=split,
                    gradability="reject",
                )
                excluded.append(
                    Exclusion(record, "dataset", f"ungradable by the dataset (grade {UNGRADABLE})")
                )
                continue
            image = files.get(name)
            grade = common.grade_and_image(label, image, f"no image {image_path}", where, problems)
            if grade is None:
                continue
            patient = f"ddr:{Path(name).stem}"
            records.append(Record(image, grade, "ddr", patient, official_split=split, gradability="gradable"))
    return common.finish_source(records, problems, verify_images, excluded=excluded)


def lesion_images(root: str | Path) -> list[Record]:
    """The lesion-segmentation images with their EX / HE / MA / SE masks."""
    root = Path(root) / "lesion_segmentation"
    out = []
    for folder, _ in SPLITS:
        for image in sorted((root / folder / "image").glob("*.jpg")):
            masks = [root / folder / "label" / code / f"{image.stem}.tif" for code in LESIONS]
            patient = f"ddr:segmentation/{image.stem}"
            out.append(
                Record(image, common.UNKNOWN, "ddr", patient, masks=tuple(m for m in masks if m.is_file()))
            )
    return out


def write_synthetic(out: Path, num: int, size: int, seed: int) -> Path:
    """The three grading folders and lists (some grade-5, badly exposed) and a lesion-segmentation part."""
    root = out / SOURCE.folder
    lists: dict[str, list[str]] = {folder: [] for folder, _ in SPLITS}
    for i, grade in enumerate(tqdm(grade_sequence(num, COUNTS, seed, 4), desc="synth ddr")):
        folder = ("train", "train", "train", "valid", "test")[i % 5]
        name = f"{i // 100:03d}-{i:04d}-{100 + i % 7:03d}.jpg"
        image, _ = render_fundus(grade, size, seeded_rng(seed, 4, i))
        ungradable = i % 31 == 7
        if ungradable:  # listed as grade 5, badly exposed
            image = (image * 0.2).astype(np.uint8)
        write_rgb(root / "DR_grading" / folder / name, image)
        lists[folder].append(f"{name} {UNGRADABLE if ungradable else grade}")
    for folder, lines in lists.items():
        (root / "DR_grading" / f"{folder}.txt").write_text("\n".join(lines) + "\n")
    for j in range(max(3, num // 10)):
        folder = SPLITS[j % 3][0]
        stem = f"seg{j:04d}"
        image, mask = render_fundus(2 + j % 3, size, seeded_rng(seed, 4, 10**6 + j))
        write_rgb(root / "lesion_segmentation" / folder / "image" / f"{stem}.jpg", image)
        for code in LESIONS:
            label = root / "lesion_segmentation" / folder / "label" / code / f"{stem}.tif"
            write_mask(label, mask if code == "HE" else np.zeros_like(mask))
    return root


SOURCE = Source(
    name="ddr",
    folder="ddr",
    marker="DR_grading",
    read=read,
    write_synthetic=write_synthetic,
    download="DDR (github.com/nkicsl/DDR-dataset): DR_grading/ and lesion_segmentation/  ->  {data}/ddr/",
    lesion_images=lesion_images,
)
