"""Class-tiered Albumentations pipelines (paper Appendix C) and the evaluation transform.

The minority tier (stronger augmentation, random erasing) is chosen by the *sample's label*,
because the oversampled minority grades repeat images within an epoch and need more variety.
Pipelines are built with ``strict=True`` so a mistyped or 1.x-style argument is an error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD

#: Mild, Severe and Proliferative: the grades that get the minority tier by default.
MINORITY_GRADES = (1, 3, 4)


def _geometry_and_colour(p: float, rotate: int, jitter: float, hue: float, scale: float) -> list:
    """Flips, rotation, colour jitter and a small affine: the transforms both tiers share.

    Args:
        p: probability of the flips, rotation and jitter.
        rotate: largest rotation in degrees.
        jitter: brightness / contrast / saturation jitter.
        hue: hue jitter.
        scale: largest relative scale change.
    """
    return [
        A.HorizontalFlip(p=p),
        A.VerticalFlip(p=p),
        A.Rotate(limit=rotate, p=p),
        A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=hue, p=p),
        A.Affine(translate_percent=(-0.05, 0.05), scale=(1 - scale, 1 + scale), p=0.5),
    ]


def standard_tier() -> A.Compose:
    """All classes: flips p 0.5, rotation <= 30 deg, colour jitter, small translate/scale."""
    return A.Compose(_geometry_and_colour(0.5, 30, 0.2, 0.0, 0.05), strict=True)


def minority_tier() -> A.Compose:
    """Minority grades: flips p 0.6, rotation <= 35 deg, stronger jitter with hue, erasing p 0.4."""
    erasing = A.CoarseDropout(
        num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), fill=0, p=0.4
    )
    return A.Compose([*_geometry_and_colour(0.6, 35, 0.3, 0.05, 0.1), erasing], strict=True)


#: A backbone's input normalisation: (mean, std) per channel on a 0-1 scale (CLIP's by default).
Normalisation = tuple[Sequence[float], Sequence[float]]
CLIP_NORMALISATION: Normalisation = (CLIP_MEAN, CLIP_STD)


def to_tensor(normalisation: Normalisation = CLIP_NORMALISATION) -> A.Compose:
    """The backbone's normalisation and HWC uint8 -> CHW float tensor (deterministic)."""
    mean, std = normalisation
    return A.Compose(
        [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()],
        strict=True,
    )


class TieredAugment:
    """Pick the standard or minority pipeline by label, then normalise to a tensor.

    The tensor is normalised with the backbone's ``normalisation`` (CLIP's by default).

    Seeding has one path: on first use in a process the pipelines are seeded from that
    process's seed: in a DataLoader worker the loader's base seed plus the worker id (drawn
    from the seeded main process), else the main process's torch seed. Albumentations draws
    from its own generators, which forked workers would otherwise share (every worker
    augmenting identically).
    """

    def __init__(
        self,
        minority_grades: Sequence[int] = MINORITY_GRADES,
        normalisation: Normalisation = CLIP_NORMALISATION,
    ):
        self.minority_grades = frozenset(minority_grades)
        self.standard = standard_tier()
        self.minority = minority_tier()
        self.finish = to_tensor(normalisation)
        self.seeded_for: tuple[int, int] | None = None

    def reseed(self, seed: int) -> None:
        """Seed both pipelines.

        Args:
            seed: the standard tier's seed (the minority tier gets ``seed + 1``).
        """
        self.standard.set_random_seed(seed)
        self.minority.set_random_seed(seed + 1)

    def tier(self, label: int) -> A.Compose:
        """The pipeline for ``label``.

        Args:
            label: the image's grade.
        """
        return self.minority if label in self.minority_grades else self.standard

    def __call__(self, image: np.ndarray, label: int) -> torch.Tensor:
        """Augment, normalise and convert one image.

        Args:
            image: HxWx3 uint8 RGB.
            label: its grade (picks the tier).
        """
        worker = torch.utils.data.get_worker_info()
        seed = worker.seed if worker is not None else torch.initial_seed()
        if self.seeded_for != (os.getpid(), seed):
            self.reseed(seed % 2**31)
            self.seeded_for = (os.getpid(), seed)
        augmented = self.tier(label)(image=image)["image"]
        return self.finish(image=augmented)["image"]


class EvalTransform:
    """Evaluation: normalisation only, so the same image always gives the same tensor.

    Args:
        normalisation: the backbone's (mean, std) (CLIP's by default).
    """

    def __init__(self, normalisation: Normalisation = CLIP_NORMALISATION) -> None:
        self.finish = to_tensor(normalisation)

    def __call__(self, image: np.ndarray, label: int) -> torch.Tensor:
        """Normalise and convert one image.

        Args:
            image: HxWx3 uint8 RGB.
            label: unused (the signature of every transform).
        """
        return self.finish(image=image)["image"]
