"""Train/val/test split: stratified by grade, grouped by patient, deterministic for a seed."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from drgrade.data.sources import Record
from drgrade.grades import GRADE_NAMES, NUM_GRADES

SPLITS = ("train", "val", "test")


def split_records(
    records: Sequence[Record],
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
) -> list[str]:
    """Assign each record to train/val/test; returns one split name per record.

    Patients (groups) are the unit of assignment, so both eyes of an exam never straddle
    splits. Groups are stratified by their worst grade; within each stratum they are shuffled
    and each goes to the split furthest below its image quota, which keeps the per-grade
    proportions close to ``ratios`` even for small strata.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[record.patient_id].append(i)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient, members in groups.items():
        strata[max(records[i].grade for i in members)].append(patient)

    rng = np.random.default_rng(seed)
    assignment = [""] * len(records)
    for grade in sorted(strata):
        patients = sorted(strata[grade])
        rng.shuffle(patients)
        total = sum(len(groups[p]) for p in patients)
        quota = np.asarray(ratios, dtype=float) * total
        filled = np.zeros(3)
        for patient in patients:
            target = int(np.argmax(quota - filled))
            filled[target] += len(groups[patient])
            for i in groups[patient]:
                assignment[i] = SPLITS[target]
    return assignment


def count_table(records: list[Record], splits: list[str]) -> str:
    """A per-split, per-grade count table, as printed at setup.

    Args:
        records: the images.
        splits: each image's split.
    """
    counts = Counter(zip(splits, (r.grade for r in records), strict=True))
    width = max(len(n) for n in GRADE_NAMES) + 2
    lines = ["split".ljust(8) + "".join(n.rjust(width) for n in GRADE_NAMES) + "total".rjust(8)]
    for split in SPLITS:
        row = [counts[(split, g)] for g in range(NUM_GRADES)]
        lines.append(split.ljust(8) + "".join(str(n).rjust(width) for n in row) + str(sum(row)).rjust(8))
    return "\n".join(lines)


def split_identity(records: list[Record], splits: list[str], ratios, seed: int) -> dict:
    """A fingerprint of the split (every image's source, file name and split) and its settings.

    File names rather than full paths, so the same download moved to another folder or machine
    still matches.

    Args:
        records: the images.
        splits: each image's split.
        ratios: the split ratios.
        seed: the split seed.
    """
    items = sorted(f"{r.source}/{r.path.name}:{s}" for r, s in zip(records, splits, strict=True))
    digest = hashlib.sha256("\n".join(items).encode()).hexdigest()
    return {"fingerprint": digest, "images": len(items), "split_ratios": list(ratios), "split_seed": seed}
