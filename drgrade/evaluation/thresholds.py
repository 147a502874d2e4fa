"""Per-class decision thresholds and the decision rule ``argmax_k p_k / t_k``.

The rule is always defined (no "no class passed" case), equals plain argmax when all thresholds
are equal, and never falls back to a fixed class. Thresholds are calibrated one class at a time
on the validation split's one-vs-rest problem, by Youden's J (tpr - fpr) or by F1.
"""

from __future__ import annotations

from typing import Literal

import torch

CalibrationMethod = Literal["youden", "f1"]


def decide(probs: torch.Tensor, thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """Grade per row: argmax of probabilities scaled by 1 / threshold."""
    if thresholds is None:
        return probs.argmax(dim=1)
    return (probs / thresholds.to(probs).clamp_min(1e-6)).argmax(dim=1)


def _best_threshold(scores: torch.Tensor, positive: torch.Tensor, method: CalibrationMethod) -> float:
    """The cut on ``scores`` that maximises Youden's J or F1 for ``positive`` (one-vs-rest)."""
    order = torch.argsort(scores, descending=True)
    sorted_scores, sorted_pos = scores[order], positive[order].double()
    tp = torch.cumsum(sorted_pos, 0)
    fp = torch.cumsum(1 - sorted_pos, 0)
    # only cut where the score changes, so ties are never split
    last_of_run = torch.ones_like(sorted_scores, dtype=torch.bool)
    last_of_run[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    n_pos, n_neg = sorted_pos.sum(), (1 - sorted_pos).sum()
    objective = tp / n_pos - fp / n_neg if method == "youden" else 2 * tp / (tp + fp + n_pos)
    objective[~last_of_run] = -torch.inf
    best = int(torch.argmax(objective))
    # a threshold midway to the next lower score keeps the chosen cut robust to tiny shifts
    below = sorted_scores[best + 1] if best + 1 < len(sorted_scores) else sorted_scores[best] / 2
    return float((sorted_scores[best] + below) / 2)


def calibrate_thresholds(
    probs: torch.Tensor, targets: torch.Tensor, method: CalibrationMethod = "youden"
) -> torch.Tensor:
    """One threshold per class from the one-vs-rest curve.

    Classes without both positives and negatives keep the neutral threshold 1/K (their column is then scaled
    like plain argmax).
    """
    probs, targets = probs.double().cpu(), targets.long().cpu()
    num_classes = probs.shape[1]
    thresholds = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    for k in range(num_classes):
        positive = targets == k
        if 0 < positive.sum() < len(positive):
            thresholds[k] = max(_best_threshold(probs[:, k], positive, method), 1e-6)
    return thresholds.float()
