"""Synthetic EyePACS, IDRiD and DDR folders in their published layouts, quirks included.

The images come from the same generator as the APTOS / Messidor-2 ones (``render_fundus``);
what differs is where they go and how they are listed, exactly as each download names them, so
every reader is tested end to end offline. Lesion masks: the generator draws one mask for all
lesions, written here as the haemorrhage layer (IDRiD ``_HE``, DDR ``HE``) with the other
lesion layers empty, since a per-type split of synthetic lesions would be invented detail.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drgrade.data.images import write_rgb
from drgrade.data.public_sources import (
    DDR_LESIONS,
    DDR_UNGRADABLE,
    IDRID_GRADING,
    IDRID_LESIONS,
    IDRID_PARTS,
    IDRID_SEGMENTATION,
)
from drgrade.data.synthetic import (
    grade_sequence,
    refuse_occupied,
    render_fundus,
    seeded_rng,
    write_aptos,
    write_mask,
    write_messidor,
)

#: Per-grade image counts of the real datasets, used as class frequencies.
EYEPACS_COUNTS = (25810, 2443, 5292, 873, 708)
IDRID_COUNTS = (168, 25, 168, 93, 62)
DDR_COUNTS = (6266, 630, 4477, 236, 913)
_DATASET = {"eyepacs": 2, "idrid": 3, "ddr": 4}


def write_eyepacs(out: Path, num: int, size: int, seed: int) -> Path:
    """``trainLabels.csv`` + ``train/<n>_<eye>.jpeg`` and, for a fifth of the patients, the test part.

    Both eyes of a patient are written, the second eye's grade within one of the first's.
    """
    root = out / "eyepacs"
    patients = max(num // 2, 5)
    grades = grade_sequence(patients, EYEPACS_COUNTS, seed, _DATASET["eyepacs"])
    rows: dict[str, list] = {"train": [], "test": []}
    for k, grade in enumerate(tqdm(grades, desc="synth eyepacs")):
        part = "test" if k % 5 == 4 else "train"
        rng = seeded_rng(seed, _DATASET["eyepacs"], k)
        other = int(np.clip(grade + rng.choice([-1, 0, 0, 1]), 0, 4))
        for eye, eye_grade in (("left", grade), ("right", other)):
            name = f"{10 + 3 * k}_{eye}"
            image, _ = render_fundus(eye_grade, size, rng)
            write_rgb(root / part / f"{name}.jpeg", image)
            rows[part].append(
                [name, eye_grade] + (["Public" if k % 2 else "Private"] if part == "test" else [])
            )
    with (root / "trainLabels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "level"), *rows["train"]])
    with (root / "retinopathy_solution.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "level", "Usage"), *rows["test"]])
    return root


def write_idrid(out: Path, num: int, size: int, seed: int) -> Path:
    """Disease grading (80% training, 20% testing sheets, the published header quirks) + segmentation part."""
    root = out / "idrid"
    grades = grade_sequence(num, IDRID_COUNTS, seed, _DATASET["idrid"])
    cut = round(0.8 * num)
    for (folder, sheet, _), chosen in zip(IDRID_PARTS, (range(cut), range(cut, num)), strict=True):
        rows = []
        for i in tqdm(chosen, desc=f"synth idrid {folder}"):
            name = f"IDRiD_{i + 1:03d}"
            image, _ = render_fundus(grades[i], size, seeded_rng(seed, _DATASET["idrid"], i))
            write_rgb(root / IDRID_GRADING / "1. Original Images" / folder / f"{name}.jpg", image)
            rows.append([name, grades[i], int(grades[i] >= 2), "", ""])
        path = root / IDRID_GRADING / "2. Groundtruths" / sheet
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:  # the published sheets: trailing space, empty columns
            csv.writer(f).writerows(
                [("Image name", "Retinopathy grade", "Risk of macular edema ", "", ""), *rows]
            )
    segmentation = root / IDRID_SEGMENTATION
    for j in range(max(2, num // 10)):
        name = f"IDRiD_{j + 1:02d}"
        folder = IDRID_PARTS[j % 2][0]
        image, mask = render_fundus(2 + j % 3, size, seeded_rng(seed, _DATASET["idrid"], 10**6 + j))
        write_rgb(segmentation / "1. Original Images" / folder / f"{name}.jpg", image)
        labels = segmentation / "2. All Segmentation Groundtruths" / folder
        write_mask(labels / IDRID_LESIONS[1][0] / f"{name}_{IDRID_LESIONS[1][1]}.tif", mask)
        write_mask(labels / IDRID_LESIONS[0][0] / f"{name}_{IDRID_LESIONS[0][1]}.tif", np.zeros_like(mask))
    return root


def write_ddr(out: Path, num: int, size: int, seed: int) -> Path:
    """``DR_grading/{train,valid,test}`` with their lists (some grade-5 ungradable) + lesion segmentation."""
    root = out / "ddr"
    grades = grade_sequence(num, DDR_COUNTS, seed, _DATASET["ddr"])
    lists: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for i, grade in enumerate(tqdm(grades, desc="synth ddr")):
        folder = ("train", "train", "train", "valid", "test")[i % 5]
        rng = seeded_rng(seed, _DATASET["ddr"], i)
        name = f"{i // 100:03d}-{i:04d}-{100 + i % 7:03d}.jpg"
        image, _ = render_fundus(grade, size, rng)
        ungradable = i % 31 == 7
        if ungradable:  # listed as grade 5, badly exposed
            image = (image * 0.2).astype(np.uint8)
        write_rgb(root / "DR_grading" / folder / name, image)
        lists[folder].append(f"{name} {DDR_UNGRADABLE if ungradable else grade}")
    for folder, lines in lists.items():
        (root / "DR_grading" / f"{folder}.txt").write_text("\n".join(lines) + "\n")
    for j in range(max(3, num // 10)):
        folder = ("train", "valid", "test")[j % 3]
        stem = f"seg{j:04d}"
        image, mask = render_fundus(2 + j % 3, size, seeded_rng(seed, _DATASET["ddr"], 10**6 + j))
        write_rgb(root / "lesion_segmentation" / folder / "image" / f"{stem}.jpg", image)
        for code in DDR_LESIONS:
            write_mask(
                root / "lesion_segmentation" / folder / "label" / code / f"{stem}.tif",
                mask if code == "HE" else np.zeros_like(mask),
            )
    return root


#: ``drgrade synth --layout`` name -> (folder it writes, writer(out, num, size, seed)).
LAYOUTS: dict[str, tuple[str, Callable[[Path, int, int, int], Path]]] = {
    "aptos": ("aptos2019", write_aptos),
    "messidor2": ("messidor2", write_messidor),
    "eyepacs": ("eyepacs", write_eyepacs),
    "idrid": ("idrid", write_idrid),
    "ddr": ("ddr", write_ddr),
}


def write_layouts(
    out: str | Path, layouts: list[str], num: int, size: int, seed: int, force: bool
) -> list[Path]:
    """Write each named layout under ``out``; refuses non-empty dataset folders unless ``force``.

    Args:
        out: the parent folder.
        layouts: names from ``LAYOUTS``.
        num: images per layout.
        size: image height in pixels.
        seed: generator seed.
        force: overwrite non-empty dataset folders.
    """
    out = Path(out)
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        raise ValueError(f"unknown layout(s) {unknown}; choose from {sorted(LAYOUTS)}")
    refuse_occupied([out / LAYOUTS[name][0] for name in layouts], force)
    return [LAYOUTS[name][1](out, num, size, seed) for name in layouts]
