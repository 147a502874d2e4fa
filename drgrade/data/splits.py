"""Train/val/test split: stratified by grade, grouped by patient, deterministic for a seed."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drgrade.data.sources import Record
from drgrade.errors import OptionError
from drgrade.grades import GRADE_NAMES, NUM_GRADES

SPLITS = ("train", "val", "test")


def split_records(
    records: Sequence[Record],
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
    test_sources: Sequence[str] = (),
    official: bool = False,
) -> list[str]:
    """Assign each record to train/val/test; returns one split name per record.

    Patients (groups) are the unit of assignment, so both eyes of an exam never straddle
    splits. Groups are stratified by their worst grade; within each stratum they are shuffled
    and each goes to the split furthest below its image quota, which keeps the per-grade
    proportions close to ``ratios`` even for small strata.

    With ``official``, images whose source publishes a split keep it (see ``_official_split``).
    With ``test_sources`` (external validation) every image of those sources is test data and
    the others are split into train and validation in the ratio ``ratios[0] : ratios[1]``.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    if test_sources:
        return _external_split(records, ratios, seed, set(test_sources))
    if official:
        return _official_split(records, ratios, seed)
    return [SPLITS[part] for part in grouped_parts(records, ratios, seed)]


def grouped_parts(records: Sequence[Record], shares: Sequence[float], seed: int) -> list[int]:
    """Deal patients into ``len(shares)`` parts, stratified by grade; one part index per record.

    Patients (groups) are the unit; they are stratified by their worst grade, shuffled within
    each stratum, and each goes to the part furthest below its image quota. Train/val/test splits
    (three shares) and k folds (k equal shares) are both dealt this way.

    Args:
        records: the images (``patient_id`` already merged across duplicates).
        shares: each part's fraction of the images.
        seed: seeds the shuffle.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[record.patient_id].append(i)
    strata: dict[int, list[str]] = defaultdict(list)
    for patient, members in groups.items():
        strata[max(records[i].grade for i in members)].append(patient)

    rng = np.random.default_rng(seed)
    assignment = [0] * len(records)
    for grade in sorted(strata):
        patients = sorted(strata[grade])
        rng.shuffle(patients)
        total = sum(len(groups[p]) for p in patients)
        quota = np.asarray(shares, dtype=float) * total
        filled = np.zeros(len(shares))
        for patient in patients:
            target = int(np.argmax(quota - filled))
            filled[target] += len(groups[patient])
            for i in groups[patient]:
                assignment[i] = target
    return assignment


def _official_split(records: Sequence[Record], ratios: Sequence[float], seed: int) -> list[str]:
    """Each source's published split; a missing validation part is carved from its training part.

    Sources without a published split (APTOS, Messidor-2, CSVs) are split as usual.
    """
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_source[record.source].append(i)
    development = ratios[0] + ratios[1]
    assignment = [""] * len(records)
    for members in by_source.values():
        published = {records[i].official_split for i in members}
        if published == {""}:
            parts = [(members, tuple(ratios))]
        else:
            carve = "val" not in published
            for i in members:
                assignment[i] = records[i].official_split
            train = [i for i in members if records[i].official_split == "train"]
            parts = [(train, (ratios[0] / development, ratios[1] / development, 0.0))] if carve else []
        for chosen, shares in parts:
            for i, split in zip(
                chosen, split_records([records[i] for i in chosen], shares, seed), strict=True
            ):
                assignment[i] = split
    return assignment


def _external_split(
    records: Sequence[Record], ratios: Sequence[float], seed: int, test_sources: set[str]
) -> list[str]:
    """Held-out sources to test; the rest split into train/val by the train:val ratio."""
    present = sorted({r.source for r in records})
    unknown = sorted(test_sources - set(present))
    if unknown:
        raise OptionError(f"data.test_sources: no images from {unknown}; the sources read are {present}")
    if set(present) <= test_sources:
        raise OptionError(
            f"data.test_sources holds out every source read ({present}): nothing is left to train on"
        )
    kept = [i for i, r in enumerate(records) if r.source not in test_sources]
    development = ratios[0] + ratios[1]
    inner = split_records(
        [records[i] for i in kept], (ratios[0] / development, ratios[1] / development, 0.0), seed
    )
    assignment = ["test"] * len(records)
    for i, split in zip(kept, inner, strict=True):
        assignment[i] = split
    return assignment


#: How held out each split is: an image group spanning splits keeps only its most held-out part.
_HELD_OUT_RANK = {split: rank for rank, split in enumerate(SPLITS)}


def held_out_leaks(records: Sequence[Record], splits: Sequence[str]) -> dict[int, str]:
    """Images whose group also lies in a more held-out split, with why: they must leave their split.

    A group is a patient, or copies merged into one by the duplicate check.

    A grouped split never separates a group, but fixed assignments can: every image of a held-out
    source is test data (external validation), and published splits are kept as published. A
    Messidor-2 photograph copied into APTOS under another name is one group with its copy; when
    the Messidor-2 image is test data, the APTOS copy must not be trained on. The group's images in
    its most held-out split stay; the others are left out (never moved: that would change a
    held-out source's test set).

    Args:
        records: the images (``patient_id`` already merged across duplicates).
        splits: each image's split.

    Returns:
        {record position: reason} for every image to leave out.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[record.patient_id].append(i)
    leaks = {}
    for members in groups.values():
        top = max(_HELD_OUT_RANK[splits[i]] for i in members)
        kept = [i for i in members if _HELD_OUT_RANK[splits[i]] == top]
        for i in members:
            if _HELD_OUT_RANK[splits[i]] < top:
                leaks[i] = (
                    f"same photograph or patient as {records[kept[0]].path} ({records[kept[0]].source}, "
                    f"{SPLITS[top]} split): left out of {splits[i]}"
                )
    return leaks


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


#: How each kind of exclusion reads in the per-source table.
EXCLUSION_KINDS = {
    "dataset": "ungradable by the dataset",
    "quality": "refused by the quality gate",
    "duplicate": "same photograph or patient as a held-out image",
    "split_file": "left out by the split file",
}


def source_table(
    records: list[Record], splits: list[str], excluded: Sequence, flagged: Counter | None = None
) -> str:
    """Per source: images kept in each split, images left out by reason, images the gate flagged.

    Args:
        records: the kept images.
        splits: each kept image's split.
        excluded: ``Exclusion`` entries (record, kind, reason).
        flagged: per source, kept images the quality gate would refuse (``data.quality_gate: keep``).
    """
    flagged = flagged or Counter()
    kept = Counter(zip((r.source for r in records), splits, strict=True))
    left_out = Counter((e.record.source, e.kind) for e in excluded)
    sources = sorted({r.source for r in records} | {e.record.source for e in excluded})
    lines = ["source".ljust(12) + "".join(s.rjust(7) for s in SPLITS) + "  left out"]
    for source in sources:
        reasons = ", ".join(
            f"{left_out[source, kind]} {label}"
            for kind, label in EXCLUSION_KINDS.items()
            if left_out[source, kind]
        )
        counts = "".join(str(kept[source, split]).rjust(7) for split in SPLITS)
        gate = f"; kept although the quality gate refuses them: {flagged[source]}" if flagged[source] else ""
        lines.append(source.ljust(12) + counts + "  " + (reasons or "none") + gate)
    return "\n".join(lines)


def split_settings(
    ratios, seed: int, test_sources=(), official: bool = False, split_file: str | None = None
) -> dict:
    """The settings that decide a split, normalised; checkpoints record them, ``best`` compares them.

    A split file decides alone: its name stands in ``split`` (``file:<name>``).
    """
    return {
        "split_ratios": [float(r) for r in ratios],
        "split_seed": int(seed),
        "test_sources": sorted(test_sources) or None,
        "split": f"file:{Path(split_file).name}" if split_file else "official" if official else "grouped",
    }


def split_identity(
    records: list[Record],
    splits: list[str],
    ratios,
    seed: int,
    test_sources=(),
    official: bool = False,
    split_file: str | None = None,
) -> dict:
    """A fingerprint of the split (every image's source, folder, file name and split) and its settings.

    Folder and file names rather than full paths, so the same download moved to another folder or
    machine still matches, while IDRiD's ``a. Training Set/IDRiD_001.jpg`` and ``b. Testing
    Set/IDRiD_001.jpg`` stay two images.

    Args:
        records: the images.
        splits: each image's split.
        ratios: the split ratios.
        seed: the split seed.
        test_sources: the sources held out as the test split (external validation).
        official: whether published splits were used.
        split_file: the split file read, if any.
    """
    items = [f"{image_key(r)}:{s}" for r, s in zip(records, splits, strict=True)]
    return {
        "fingerprint": _digest(items),
        "images": len(items),
        **split_settings(ratios, seed, test_sources, official, split_file),
    }


def image_key(record: Record) -> str:
    """An image's identity across machines: its source, folder name and file name."""
    return f"{record.source}/{record.path.parent.name}/{record.path.name}"


def _digest(items: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()


def images_identity(records: Sequence[Record]) -> dict:
    """A fingerprint of a set of images (which images an evaluation graded), as ``split_identity``."""
    return {"fingerprint": _digest([image_key(r) for r in records]), "images": len(records)}
