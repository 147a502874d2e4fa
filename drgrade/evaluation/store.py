"""Collect a whole split's logits, exactly once per image, across DDP ranks."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class PredictionStore(Metric):
    """Concatenates (logits, targets, dataset index, patient group) over a split and across ranks.

    ``DistributedSampler`` pads the last shard by repeating images so every rank gets the same
    count; deduplicating by dataset index on compute makes multi-device metrics equal the
    single-process ones instead of double-counting those repeats.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("logits", "targets", "index", "groups"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, groups: torch.Tensor
    ) -> None:
        """Append one batch's logits, targets, dataset indices and patient-group codes."""
        self.logits.append(logits.detach().float())
        self.targets.append(targets.detach().long())
        self.index.append(index.detach().long())
        self.groups.append(groups.detach().long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, targets, index, groups), one row per distinct image, sorted by dataset index."""

        def cat(state):
            return torch.cat(state) if isinstance(state, list) else state

        logits, targets, index, groups = (
            cat(s) for s in (self.logits, self.targets, self.index, self.groups)
        )
        order = torch.argsort(index, stable=True)
        index, logits, targets, groups = index[order], logits[order], targets[order], groups[order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return logits[first].cpu(), targets[first].cpu(), index[first].cpu(), groups[first].cpu()
