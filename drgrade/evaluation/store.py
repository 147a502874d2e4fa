"""Collect a whole split's logits, exactly once per image, across DDP ranks."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class PredictionStore(Metric):
    """Concatenates (logits, targets, dataset index) over a split and across ranks.

    ``DistributedSampler`` pads the last shard by repeating images so every rank gets the same
    count; deduplicating by dataset index on compute makes multi-device metrics equal the
    single-process ones instead of double-counting those repeats.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> None:
        """Append one batch's logits, targets and dataset indices."""
        self.probs.append(probs.detach().float())
        self.targets.append(targets.detach().long())
        self.index.append(index.detach().long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, targets, index), one row per distinct image, sorted by dataset index."""

        def cat(state):
            return torch.cat(state) if isinstance(state, list) else state

        probs, targets, index = cat(self.probs), cat(self.targets), cat(self.index)
        order = torch.argsort(index, stable=True)
        index, probs, targets = index[order], probs[order], targets[order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return probs[first].cpu(), targets[first].cpu(), index[first].cpu()
