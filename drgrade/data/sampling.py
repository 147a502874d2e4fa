"""Per-epoch class rebalancing of the training split.

Both samplers draw a fresh index list each epoch from a private generator seeded by
``(seed, epoch)``. Under DDP, Lightning wraps them in ``DistributedSamplerWrapper``, which asks
every rank for the full list and keeps that rank's share: identical lists on all ranks (same
seed, same epoch via ``set_epoch``) are what make those shares disjoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from drgrade.grades import NUM_GRADES

DEFAULT_TARGETS = (445, 200, 200, 180, 180)


class EpochSampler(Sampler[int]):
    """Base class: a seeded, epoch-dependent draw over ``labels``."""

    def __init__(self, labels: Sequence[int], seed: int = 42):
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Redraw for ``epoch`` (Lightning calls this each epoch; every rank draws the same list)."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return generator

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's indices, drawn from ``generator``."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw(self._generator()).tolist())


class ClassTargetSampler(EpochSampler):
    """Resample each class to a target count per epoch (the paper's Table 5 scheme).

    A class above its target is undersampled without replacement; a class below it keeps every
    image once and is topped up by drawing with replacement, so no image is dropped from an
    epoch while the class is oversampled. A class absent from the split contributes nothing.
    """

    def __init__(self, labels: Sequence[int], targets: Sequence[int] = DEFAULT_TARGETS, seed: int = 42):
        super().__init__(labels, seed)
        if len(targets) != NUM_GRADES or any(t < 0 for t in targets):
            raise ValueError(f"target_counts needs {NUM_GRADES} non-negative counts, got {list(targets)}")
        self.targets = [int(t) for t in targets]
        present = torch.bincount(self.labels, minlength=NUM_GRADES)
        self._length = sum(t for t, n in zip(self.targets, present.tolist(), strict=True) if n > 0)

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's indices: each class undersampled or topped up to its target."""
        parts = []
        for grade, target in enumerate(self.targets):
            members = torch.nonzero(self.labels == grade).flatten()
            count = len(members)
            if count == 0 or target == 0:
                continue
            if count >= target:
                parts.append(members[torch.randperm(count, generator=generator)[:target]])
            else:
                extra = torch.randint(count, (target - count,), generator=generator)
                parts.append(torch.cat([members, members[extra]]))
        indices = torch.cat(parts)
        return indices[torch.randperm(len(indices), generator=generator)]

    def __len__(self) -> int:
        return self._length


class InverseFrequencySampler(EpochSampler):
    """Draw ``len(labels)`` indices with replacement, each weighted by 1 / its class count."""

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's indices, drawn with inverse-frequency weights."""
        counts = torch.bincount(self.labels, minlength=NUM_GRADES).double()
        weights = 1.0 / counts[self.labels]
        return torch.multinomial(weights, len(self.labels), replacement=True, generator=generator)

    def __len__(self) -> int:
        return len(self.labels)
