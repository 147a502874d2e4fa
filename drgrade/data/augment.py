"""Class-tiered Albumentations pipelines (paper Appendix C) and the evaluation transform.

The minority tier (stronger augmentation, random erasing) is chosen by the *sample's label*,
because the oversampled minority grades repeat images within an epoch and need more variety.
Pipelines are built with ``strict=True`` so a mistyped or 1.x-style argument is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD

#: Mild, Severe and Proliferative: the grades that get the minority tier by default.
MINORITY_GRADES = (1, 3, 4)


def standard_tier() -> A.Compose:
    """All classes: flips p 0.5, rotation <= 30 deg, colour jitter, small translate/scale."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Rotate(limit=30, p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0, p=0.5),
            A.Affine(translate_percent=(-0.05, 0.05), scale=(0.95, 1.05), p=0.5),
        ],
        strict=True,
    )


def minority_tier() -> A.Compose:
    """Minority grades: flips p 0.6, rotation <= 35 deg, stronger jitter with hue, erasing p 0.4."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.6),
            A.VerticalFlip(p=0.6),
            A.Rotate(limit=35, p=0.6),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.6),
            A.Affine(translate_percent=(-0.05, 0.05), scale=(0.9, 1.1), p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 4),
                hole_height_range=(0.05, 0.15),
                hole_width_range=(0.05, 0.15),
                fill=0,
                p=0.4,
            ),
        ],
        strict=True,
    )


def to_tensor() -> A.Compose:
    """CLIP normalisation and HWC uint8 -> CHW float tensor (deterministic)."""
    return A.Compose(
        [A.Normalize(mean=CLIP_MEAN, std=CLIP_STD, max_pixel_value=255.0), ToTensorV2()],
        strict=True,
    )


class TieredAugment:
    """Pick the standard or minority pipeline by label, then normalise to a tensor."""

    def __init__(self, minority_grades: Sequence[int] = MINORITY_GRADES):
        self.minority_grades = frozenset(minority_grades)
        self.standard = standard_tier()
        self.minority = minority_tier()
        self.finish = to_tensor()

    def reseed(self, seed: int) -> None:
        """Seed both pipelines. Albumentations draws from its own generators, which forked
        DataLoader workers would otherwise share: every worker would augment identically."""
        self.standard.set_random_seed(seed)
        self.minority.set_random_seed(seed + 1)

    def tier(self, label: int) -> A.Compose:
        return self.minority if label in self.minority_grades else self.standard

    def __call__(self, image: np.ndarray, label: int) -> torch.Tensor:
        augmented = self.tier(label)(image=image)["image"]
        return self.finish(image=augmented)["image"]


class EvalTransform:
    """Evaluation: normalisation only, so the same image always gives the same tensor."""

    def __init__(self) -> None:
        self.finish = to_tensor()

    def __call__(self, image: np.ndarray, label: int) -> torch.Tensor:
        return self.finish(image=image)["image"]
