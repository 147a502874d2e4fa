"""Losses: focal loss, weighted CE + focal (FCN-CLIP), and the ordinal ranking loss (ranking model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from drgrade.errors import OptionError


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean of -(1 - p_t)^gamma log p_t (Lin et al. 2017); equals cross-entropy at gamma 0."""
    log_pt = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-((1 - log_pt.exp()) ** gamma) * log_pt).mean()


def inverse_frequency_weights(counts: Sequence[int]) -> torch.Tensor:
    """w_k = N / (K * n_k): 1 for a balanced split, larger for rare grades; 0 for absent ones."""
    counts_t = torch.as_tensor(counts, dtype=torch.float)
    weights = counts_t.sum() / (len(counts_t) * counts_t.clamp_min(1))
    return torch.where(counts_t > 0, weights, torch.zeros_like(weights))


class WeightedCEFocalLoss(nn.Module):
    """``ce_weight * CE(class weights) + focal_weight * focal(gamma)``.

    The weighted CE pushes the decision boundary towards rare grades; the (unweighted) focal
    term down-weights the easy majority examples that dominate CE late in training.
    """

    def __init__(
        self,
        class_weights: torch.Tensor | None = None,
        gamma: float = 2.0,
        ce_weight: float = 1.0,
        focal_weight: float = 1.0,
    ):
        super().__init__()
        self.register_buffer("class_weights", class_weights)
        self.gamma = gamma
        self.ce_weight = ce_weight
        self.focal_weight = focal_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weighted sum of class-weighted CE and focal loss."""
        ce = F.cross_entropy(logits, targets, weight=self.class_weights)
        return self.ce_weight * ce + self.focal_weight * focal_loss(logits, targets, self.gamma)


def masked_dme_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the DME logits over the images whose source grades DME (target 0 / 1).

    Images without a DME label (target < 0: APTOS, EyePACS, DDR, DeepDRiD) add nothing; a batch
    with none gives a zero that keeps the graph (so every rank's backward matches under DDP).

    Args:
        logits: [B] DME logits.
        targets: [B] 1, 0, or negative for unknown.
    """
    known = targets >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known].float(), targets[known].float())


def ordinal_pairs(num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every true grade y, the adjacent pairs (higher, lower) whose scores must be ordered.

    Returns (true_grade, higher, lower) index tensors: on both sides of y, the grade nearer to y
    must score above its neighbour one step further away.
    """
    rows = []
    for y in range(num_classes):
        rows += [(y, k, k + 1) for k in range(y, num_classes - 1)]  # right side: falls after y
        rows += [(y, k, k - 1) for k in range(1, y + 1)]  # left side: falls before y
    true, higher, lower = torch.tensor(rows).T
    return true, higher, lower


def ranking_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    margin: float = 0.5,
    form: Literal["margin", "logistic"] = "margin",
) -> torch.Tensor:
    """Ordinal ranking loss over adjacent grades (per-image mean over its pairs, batch mean).

    ``margin``: relu(margin - (s_higher - s_lower)), zero once every pair is ordered by
    ``margin``; ``logistic``: softplus(-(s_higher - s_lower)), smooth and never exactly zero.
    """
    num_classes = logits.shape[1]
    true, higher, lower = (t.to(logits.device) for t in ordinal_pairs(num_classes))
    mask = true[None, :] == targets[:, None]  # [batch, pairs]
    diff = logits[:, higher] - logits[:, lower]
    penalty = F.relu(margin - diff) if form == "margin" else F.softplus(-diff)
    return ((penalty * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()


class RankingAwareLoss(nn.Module):
    """``alpha * CE + (1 - alpha) * ranking`` (alpha 0.7 in the paper)."""

    def __init__(
        self, alpha: float = 0.7, margin: float = 0.5, form: Literal["margin", "logistic"] = "margin"
    ):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise OptionError(f"model.init_args.alpha must be in [0, 1], got {alpha}")
        self.alpha, self.margin, self.form = alpha, margin, form

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss: alpha * CE + (1 - alpha) * the ordinal ranking term."""
        ce = F.cross_entropy(logits, targets)
        rank = ranking_loss(logits, targets, self.margin, self.form)
        return self.alpha * ce + (1 - self.alpha) * rank
