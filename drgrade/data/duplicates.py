"""Duplicate and near-duplicate photographs: kept in one split, with disagreeing grades reported.

APTOS 2019 is known to hold the same photograph more than once (re-encoded, resized, sometimes
with different grades). Copies in different splits leak test images into training, so every
group of copies is given one patient id before the split. Exact copies share a content digest;
near copies have 16x16 difference hashes (dHash, on the fundus crop in grey) within a few bits.
Candidate pairs come from banding the hash (if two hashes differ in at most ``max_bits`` bits,
one of ``max_bits + 1`` bands is equal), so the check stays linear in the number of images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from drgrade.data.preprocess import fundus_box
from drgrade.data.sources import Record

HASH_SIDE = 16


def difference_hash(image: np.ndarray, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """A 256-bit dHash of the fundus crop: robust to resizing, re-encoding and mild exposure change.

    Args:
        image: HxWx3 uint8 (any channel order).
        box: the image's ``fundus_box`` when already found (None: found here).
    """
    box = fundus_box(image) if box is None else box
    grey = cv2.cvtColor(image[box] if box is not None else image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (HASH_SIDE + 1, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
    return (small[:, 1:] > small[:, :-1]).ravel()


class _Groups:
    """Union-find over record positions."""

    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def duplicate_groups(
    digests: Sequence[str], hashes: Sequence[np.ndarray], max_bits: int = 8
) -> list[list[int]]:
    """Groups (of two or more positions) of exact or near copies.

    Args:
        digests: content hash per image.
        hashes: dHash bits per image.
        max_bits: most differing bits for a near copy.
    """
    groups = _Groups(len(digests))
    first: dict[str, int] = {}
    for i, digest in enumerate(digests):
        groups.union(i, first.setdefault(digest, i))
    bits = np.stack(hashes) if hashes else np.zeros((0, HASH_SIDE * HASH_SIDE), bool)
    bands = np.array_split(np.arange(bits.shape[1]), max_bits + 1)
    for band in bands:
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, key in enumerate(np.packbits(bits[:, band], axis=1)):
            buckets[key.tobytes()].append(i)
        for members in buckets.values():
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    i, j = members[a], members[b]
                    if groups.find(i) != groups.find(j) and (bits[i] != bits[j]).sum() <= max_bits:
                        groups.union(i, j)
    by_root: dict[int, list[int]] = defaultdict(list)
    for i in range(len(digests)):
        by_root[groups.find(i)].append(i)
    return [members for members in by_root.values() if len(members) > 1]


def merge_duplicates(
    records: Sequence[Record], digests: Sequence[str], hashes: Sequence[np.ndarray], max_bits: int = 8
) -> tuple[list[Record], list[list[Record]]]:
    """Give every group of copies one patient id; return the records and the groups.

    Args:
        records: the images.
        digests: their content hashes.
        hashes: their dHash bits.
        max_bits: most differing bits for a near copy.
    """
    records = list(records)
    groups = duplicate_groups(digests, hashes, max_bits)
    # every patient touched by a group joins it, so no copy (and no fellow eye) straddles splits
    parent: dict[str, str] = {}

    def root(patient: str) -> str:
        while parent.get(patient, patient) != patient:
            patient = parent[patient]
        return patient

    for members in groups:
        roots = sorted({root(records[i].patient_id) for i in members})
        for other in roots[1:]:
            parent[other] = roots[0]
    records = [replace(r, patient_id=root(r.patient_id)) if r.patient_id in parent else r for r in records]
    return records, [[records[i] for i in members] for members in groups]
