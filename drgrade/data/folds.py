"""k folds of a dataset: patient-grouped, grade-stratified, duplicate-aware, one assignment per fold.

Duplicate-aware because the records come from ``DRDataModule.load_records``, where copies of one
photograph already share a patient group, so a group never straddles folds.

Two ways to place the test split:

- ``rotated``: each fold is the test split once; the other folds are split into train and
  validation (by the train:val ratio), the usual k-fold cross-validation;
- ``fixed``: one test split, drawn once by ``test_seed`` and the same for every seed and fold;
  the development images are dealt into k folds, each the validation split once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from drgrade.data.sources import Record
from drgrade.data.splits import grouped_parts, split_records
from drgrade.errors import OptionError

TestPlacement = Literal["rotated", "fixed"]


def fold_splits(
    records: Sequence[Record],
    folds: int,
    seed: int,
    test: TestPlacement = "rotated",
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    test_seed: int = 42,
) -> list[list[str]]:
    """One split (a name per record) for each of ``folds`` folds.

    Args:
        records: the images.
        folds: k (at least 2).
        seed: deals the folds (and carves validation for ``rotated``).
        test: ``rotated`` or ``fixed`` (see the module docstring).
        ratios: train/val/test fractions: the train:val ratio carves validation (``rotated``);
            the test fraction is the fixed test split's size (``fixed``).
        test_seed: draws the fixed test split.
    """
    if folds < 2:
        raise OptionError(f"folds must be at least 2, got {folds}")
    if test == "rotated":
        parts = grouped_parts(records, [1 / folds] * folds, seed)
        development = (ratios[0] / (ratios[0] + ratios[1]), ratios[1] / (ratios[0] + ratios[1]), 0.0)
        out = []
        for fold in range(folds):
            kept = [i for i, part in enumerate(parts) if part != fold]
            inner = split_records([records[i] for i in kept], development, seed)
            splits = ["test"] * len(records)
            for i, split in zip(kept, inner, strict=True):
                splits[i] = split
            out.append(splits)
        return out
    if test == "fixed":
        fixed = split_records(records, ratios, test_seed)
        kept = [i for i, split in enumerate(fixed) if split != "test"]
        parts = grouped_parts([records[i] for i in kept], [1 / folds] * folds, seed)
        out = []
        for fold in range(folds):
            splits = ["test"] * len(records)
            for i, part in zip(kept, parts, strict=True):
                splits[i] = "val" if part == fold else "train"
            out.append(splits)
        return out
    raise OptionError(f"test must be rotated or fixed, got {test!r}")
