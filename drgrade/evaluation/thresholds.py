"""Per-class decision thresholds and the decision rule ``argmax_k p_k / t_k``.

The rule is always defined (no "no class passed" case), equals plain argmax when all thresholds
are equal, and never falls back to a fixed class. Thresholds are calibrated on the validation
split by one of three objectives:

- ``youden`` / ``f1``: one class at a time, on its one-vs-rest curve (torchmetrics' ROC and
  precision-recall curves). Each class is tuned for itself, which over-predicts rare grades
  under the p/t rule (a tiny run gave 34 Proliferative predictions for 5 true ones).
- ``qwk``: the ordinal result directly: coordinate search over the five thresholds maximising
  validation quadratic weighted kappa of the p/t rule, as the APTOS 2019 winners tuned theirs.
  Five free thresholds fitted on a small validation split can overfit it (on the demo: 0.938
  in-sample, 0.844 on test).
- ``auto``: whichever of argmax (``none``) and the three objectives has the highest
  *cross-fitted* validation QWK (see below), then fitted on the whole validation split; the
  choice never sees its own images' fit, and thresholds are kept only where they help.

A score used to *select* checkpoints must not be computed with thresholds fitted to the images
it scores: ``crossfit_decisions`` fits on one half of the validation split and decides the
other (and vice versa), giving an honest estimate of the calibrated rule.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

CalibrationMethod = Literal["youden", "f1", "qwk", "auto"]
#: The choices ``auto`` weighs, in order of preference on a tie: plain argmax first, so that
#: thresholds are only used where they do better out of sample.
OBJECTIVES = ("none", "youden", "f1", "qwk")
#: Multipliers of the current threshold tried per class and round by the QWK search.
_STEPS = torch.logspace(-1.0, 1.0, 41, base=5.0, dtype=torch.float64)


def decide(probs: torch.Tensor, thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """Grade per row: argmax of probabilities scaled by 1 / threshold.

    Args:
        probs: probabilities [N, K].
        thresholds: per-class thresholds [K], or None for plain argmax.
    """
    if thresholds is None:
        return probs.argmax(dim=1)
    return (probs / thresholds.to(probs).clamp_min(1e-6)).argmax(dim=1)


def _midway(descending: torch.Tensor, best: int) -> float:
    """A cut midway between the chosen score and the next lower one (robust to tiny shifts)."""
    below = descending[best + 1] if best + 1 < len(descending) else descending[best] / 2
    return float((descending[best] + below) / 2)


def best_one_vs_rest_threshold(scores: torch.Tensor, positive: torch.Tensor, method: str) -> float:
    """The cut on ``scores`` maximising Youden's J (``youden``) or F1 (``f1``) for ``positive``.

    Args:
        scores: one class's probabilities [N].
        positive: whether each image is of that class [N].
        method: ``youden`` or ``f1``.
    """
    target = positive.long()
    if method == "youden":
        fpr, tpr, cuts = binary_roc(scores, target)
        objective, cuts = (tpr - fpr)[1:], cuts[1:]  # the first cut predicts nothing positive
    else:
        precision, recall, cuts = binary_precision_recall_curve(scores, target)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        objective, cuts = f1[:-1].flip(0), cuts.flip(0)  # descending cuts, as for the ROC
    return _midway(cuts.double(), int(torch.argmax(objective)))


def qwk(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """Quadratic weighted kappa (0 where undefined), from one bincount.

    The threshold search evaluates it hundreds of times per validation pass, so it is computed
    directly (equal to torchmetrics' and scikit-learn's, tested) rather than through a metric
    object.

    Args:
        preds: decided grades [N].
        targets: true grades [N].
        num_classes: K.
    """
    k = num_classes
    observed = torch.bincount(targets.long() * k + preds.long(), minlength=k * k).reshape(k, k).double()
    total = observed.sum()
    if total == 0:
        return 0.0
    expected = observed.sum(1, keepdim=True) @ observed.sum(0, keepdim=True) / total
    grades = torch.arange(k, dtype=torch.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    denominator = float((weights * expected).sum())
    return 0.0 if denominator == 0 else 1.0 - float((weights * observed).sum()) / denominator


def qwk_thresholds(probs: torch.Tensor, targets: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """Thresholds maximising the QWK of ``decide(probs, t)`` by coordinate search from argmax.

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        rounds: passes over the K classes.
    """
    k = probs.shape[1]
    thresholds = torch.full((k,), 1.0 / k, dtype=torch.float64)
    best = qwk(decide(probs, thresholds), targets, k)
    for _ in range(rounds):
        for grade in range(k):
            for candidate in thresholds[grade] * _STEPS:
                trial = thresholds.clone()
                trial[grade] = candidate
                score = qwk(decide(probs, trial), targets, k)
                if score > best + 1e-12:  # strictly better: ties keep the simpler, earlier cut
                    best, thresholds = score, trial
    return thresholds.float()


def calibrate_thresholds(
    probs: torch.Tensor, targets: torch.Tensor, method: CalibrationMethod = "youden"
) -> torch.Tensor:
    """Per-class thresholds fitted on ``(probs, targets)`` by ``method``.

    For ``youden`` / ``f1``, classes without both positives and negatives keep the neutral
    threshold 1/K (their column is then scaled like plain argmax).

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        method: ``youden``, ``f1`` or ``qwk``.
    """
    probs, targets = probs.double().cpu(), targets.long().cpu()
    if method == "auto":
        method = choose_objective(probs, targets)[0]
    if method == "none":
        return torch.full((probs.shape[1],), 1.0 / probs.shape[1])
    if method == "qwk":
        return qwk_thresholds(probs, targets)
    num_classes = probs.shape[1]
    thresholds = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    for k in range(num_classes):
        positive = targets == k
        if 0 < positive.sum() < len(positive):
            thresholds[k] = max(best_one_vs_rest_threshold(probs[:, k], positive, method), 1e-6)
    return thresholds.float()


def crossfit_decisions(probs: torch.Tensor, targets: torch.Tensor, method: CalibrationMethod) -> torch.Tensor:
    """Calibrated decisions where no image is decided by thresholds fitted to itself.

    The split is halved within each grade (every other image of a grade, in index order, so it
    is deterministic and stratified); thresholds fitted on one half decide the other.

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        method: the calibration objective.
    """
    fold = torch.zeros(len(targets), dtype=torch.bool)
    for grade in targets.unique():
        members = torch.nonzero(targets == grade).flatten()
        fold[members[1::2]] = True
    preds = probs.argmax(dim=1)
    for held_out in (fold, ~fold):
        if held_out.any() and (~held_out).any():
            thresholds = calibrate_thresholds(probs[~held_out], targets[~held_out], method)
            preds[held_out] = decide(probs[held_out], thresholds)
    return preds


def choose_objective(probs: torch.Tensor, targets: torch.Tensor) -> tuple[str, dict[str, float]]:
    """The calibration objective (or ``none``: argmax) with the best cross-fitted QWK.

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].

    Returns:
        The chosen objective and every objective's cross-fitted QWK.
    """
    probs, targets = probs.double().cpu(), targets.long().cpu()
    k = probs.shape[1]
    scores = {"none": qwk(probs.argmax(dim=1), targets, k)}
    scores |= {m: qwk(crossfit_decisions(probs, targets, m), targets, k) for m in OBJECTIVES[1:]}
    return max(OBJECTIVES, key=lambda m: scores[m]), scores
