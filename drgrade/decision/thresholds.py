"""Per-class decision thresholds for the rule ``argmax_k p_k / t_k`` (applied in ``decision.apply``).

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
- ``auto``: the objective with the highest *cross-fitted* validation QWK (see below), kept only
  when its gain over argmax is beyond noise (the paired patient-bootstrap interval of the gain
  excludes zero), then fitted on the whole validation split; otherwise argmax. The choice never
  sees its own images' fit, and thresholds are kept only where they help.

A score used to *select* checkpoints must not be computed with thresholds fitted to the images
it scores: ``crossfit_decisions`` fits on one half of the validation split and decides the
other (and vice versa), giving an honest estimate of the calibrated rule.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

from drgrade.decision.apply import decide
from drgrade.decision.fitting import midway
from drgrade.evaluation.bootstrap import BootstrapSpec, percentile_interval, resample_weights
from drgrade.evaluation.kappa import quadratic_weighted_kappa, qwk, weighted_confusion

CalibrationMethod = Literal["youden", "f1", "qwk", "auto"]
#: The choices ``auto`` weighs, in order of preference on a tie: plain argmax first, so that
#: thresholds are only used where they do better out of sample.
OBJECTIVES = ("none", "youden", "f1", "qwk")
#: Multipliers of the current threshold tried per class and round by the QWK search.
_STEPS = torch.logspace(-1.0, 1.0, 41, base=5.0, dtype=torch.float64)


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
    best = int(torch.argmax(objective))
    return midway(float(cuts[best]), cuts.double().numpy(), above=False)


def qwk_thresholds(probs: torch.Tensor, targets: torch.Tensor, rounds: int = 3) -> torch.Tensor:
    """Thresholds maximising the QWK of ``decide(probs, t)`` by coordinate search from argmax.

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        rounds: passes over the K classes.
    """
    k = probs.shape[1]
    thresholds = torch.full((k,), 1.0 / k, dtype=torch.float64)
    best = qwk(targets=targets, preds=decide(probs, thresholds), undefined=0.0)
    for _ in range(rounds):
        for grade in range(k):
            for candidate in thresholds[grade] * _STEPS:
                trial = thresholds.clone()
                trial[grade] = candidate
                score = qwk(targets=targets, preds=decide(probs, trial), undefined=0.0)
                if score > best + 1e-12:  # strictly better: ties keep the simpler, earlier cut
                    best, thresholds = score, trial
    return thresholds.float()


def calibrate_thresholds(
    probs: torch.Tensor,
    targets: torch.Tensor,
    method: CalibrationMethod = "youden",
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-class thresholds fitted on ``(probs, targets)`` by ``method``.

    For ``youden`` / ``f1``, classes without both positives and negatives keep the neutral
    threshold 1/K (their column is then scaled like plain argmax).

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        method: ``youden``, ``f1``, ``qwk``, ``auto`` or ``none``.
        groups: each image's group (patient) code, for ``auto``'s cross-fitting (default: one per image).
    """
    probs, targets = probs.double().cpu(), targets.long().cpu()
    if method == "auto":
        groups = torch.arange(len(targets)) if groups is None else groups
        method = choose_objective(probs, targets, groups)[0]
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


def halves(targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """A deterministic, stratified split of the images in two, never separating a group (patient).

    Groups are stratified by their worst grade and alternate between the halves in order of first
    appearance, so both eyes of a patient are decided by thresholds fitted without either of them.

    Args:
        targets: grades [N].
        groups: group (patient) code per image [N].

    Returns:
        [N] bool, True for the second half.
    """
    _, first, codes = np.unique(groups.numpy(), return_index=True, return_inverse=True)
    worst = np.full(len(first), -1)
    np.maximum.at(worst, codes, targets.numpy())
    second = np.zeros(len(first), dtype=bool)
    for grade in np.unique(worst):
        members = np.flatnonzero(worst == grade)
        second[members[np.argsort(first[members], kind="stable")][1::2]] = True
    return torch.from_numpy(second[codes])


def crossfit_decisions(
    probs: torch.Tensor, targets: torch.Tensor, method: CalibrationMethod, groups: torch.Tensor
) -> torch.Tensor:
    """Calibrated decisions where no image is decided by thresholds fitted to itself (or its fellow eye).

    Thresholds fitted on one half of the split (``halves``) decide the other, and vice versa.

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        method: the calibration objective.
        groups: each image's group (patient) code [N].
    """
    fold = halves(targets, groups)
    preds = probs.argmax(dim=1)
    for held_out in (fold, ~fold):
        if held_out.any() and (~held_out).any():
            thresholds = calibrate_thresholds(probs[~held_out], targets[~held_out], method, groups[~held_out])
            preds[held_out] = decide(probs[held_out], thresholds)
    return preds


#: Paired bootstrap resamples (of patients) that judge a fitted rule's cross-fitted gain over argmax.
GAIN_RESAMPLES = 1000
#: The coverage of that interval: a rule is kept only when the interval of its gain excludes zero.
GAIN_LEVEL = 0.95


def gain_interval(
    targets: torch.Tensor, fitted: torch.Tensor, argmax: torch.Tensor, groups: torch.Tensor
) -> list[float] | None:
    """Paired patient-bootstrap interval of QWK(fitted) - QWK(argmax) on the same images.

    Both sets of decisions are fixed; each resample draws patients (groups) once and scores both
    on the same draw, so the interval is of the *difference* (seed 0, ``GAIN_RESAMPLES`` draws).
    """
    spec = BootstrapSpec(resamples=GAIN_RESAMPLES, seed=0, level=GAIN_LEVEL)
    truth = targets.numpy()
    chunks = []
    for weights in resample_weights([str(g) for g in groups.tolist()], spec):
        first = quadratic_weighted_kappa(weighted_confusion(weights, truth, fitted.numpy()))
        second = quadratic_weighted_kappa(weighted_confusion(weights, truth, argmax.numpy()))
        chunks.append(first - second)
    return percentile_interval(np.concatenate(chunks), GAIN_LEVEL)


def choose_objective(probs: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> tuple[str, dict]:
    """Argmax, or the calibration objective whose cross-fitted QWK gain over argmax is beyond noise.

    The best objective by cross-fitted QWK (ties: the order of ``OBJECTIVES``) is the candidate;
    it is kept only when the paired bootstrap interval of its gain over argmax excludes zero. A
    margin of a few thousandths on 90 images is noise: thresholds fitted on it cost accuracy on
    test, so argmax stays.

    Args:
        probs: validation probabilities [N, K].
        targets: validation grades [N].
        groups: each image's group (patient) code [N].

    Returns:
        The chosen objective, and the record of the choice: every objective's cross-fitted QWK,
        the candidate, its gain and the gain's interval, whether it was kept, and the rule.
    """
    probs, targets = probs.double().cpu(), targets.long().cpu()
    argmax = probs.argmax(dim=1)
    decisions = {m: crossfit_decisions(probs, targets, m, groups) for m in OBJECTIVES[1:]}
    scores = {"none": qwk(targets=targets, preds=argmax, undefined=0.0)}
    scores |= {m: qwk(targets=targets, preds=d, undefined=0.0) for m, d in decisions.items()}
    candidate = max(OBJECTIVES[1:], key=lambda m: scores[m])
    gain = scores[candidate] - scores["none"]
    interval = gain_interval(targets, decisions[candidate], argmax, groups.cpu()) if gain > 0 else None
    kept = interval is not None and interval[0] > 0
    return ("none" if not kept else candidate), {
        "crossfit_qwk": scores,
        "candidate": candidate,
        "gain": gain,
        "gain_interval": interval,
        "kept": kept,
        "images": len(targets),
        "rule": f"a fitted objective is kept only when the paired patient-bootstrap {GAIN_LEVEL:.0%} "
        f"interval ({GAIN_RESAMPLES} resamples, seed 0) of its cross-fitted QWK gain over argmax "
        "excludes zero",
    }
