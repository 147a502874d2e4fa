"""Fitting the rule's scalars on the validation split: temperature, operating cuts, uncertainty cut.

- **Temperature** (Guo et al. 2017): the T minimising the validation negative log-likelihood of
  softmax(logits / T). NLL is convex in 1/T, hence unimodal in log T: scipy's bounded scalar
  minimiser over log T in [1e-3, 1e3] finds it deterministically (logit scales differ by orders
  of magnitude: a random-weight zero-shot model's logits differ by thousandths).
- **Operating cuts** (Gulshan et al., JAMA 2016; IDx-DR, Abramoff et al. 2018): for a referral
  score, the highest cut reaching a target sensitivity and the lowest keeping a target
  specificity on validation, placed midway to the neighbouring score (robust to tiny shifts).
- **Uncertainty cut** (Leibig et al. 2017): the entropy above which the ``refer_fraction`` least
  certain validation images lie.

NumPy and SciPy only; the rule that applies them is ``drgrade.decision.apply``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from drgrade.grades import REFERRAL_LEVELS, referral_score

#: The operating points a rule stores, in this order: (referral level, what its cut targets).
OPERATING_POINTS: tuple[tuple[str, str], ...] = (
    ("referable", "sensitivity"),
    ("referable", "specificity"),
    ("vtdr", "sensitivity"),
    ("vtdr", "specificity"),
)
#: The temperatures considered.
TEMPERATURE_BOUNDS = (1e-3, 1e3)


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean NLL of the targets under softmax(logits / temperature), in float64."""
    log_probs = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-log_probs[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising validation NLL (1.0 when there is nothing to fit on).

    Args:
        logits: validation logits [N, K].
        targets: validation grades [N].
    """
    if len(targets) == 0:
        return 1.0
    low, high = (math.log(t) for t in TEMPERATURE_BOUNDS)
    best = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-10, "maxiter": 500},
    )
    return math.exp(best.x)


def midway(value: float, scores: np.ndarray, above: bool) -> float:
    """A cut midway between ``value`` and the nearest score on the given side (robust to tiny shifts).

    Without a score on that side: just above ``value``, or half of it.
    """
    side = scores[scores > value] if above else scores[scores < value]
    if side.size == 0:
        return value + 1e-9 if above else value / 2
    nearest = side.min() if above else side.max()
    return float((value + nearest) / 2)


def cut_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The highest cut whose rule ``score >= cut`` reaches ``target`` sensitivity on these images."""
    hits = np.sort(scores[positive])[::-1]
    if hits.size == 0:
        return None
    needed = math.ceil(target * hits.size - 1e-9)
    return midway(float(hits[max(needed, 1) - 1]), scores, above=False)


def cut_for_specificity(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The lowest cut whose rule ``score >= cut`` keeps ``target`` specificity on these images."""
    negatives = np.sort(scores[~positive])
    if negatives.size == 0:
        return None
    needed = math.ceil(target * negatives.size - 1e-9)
    return midway(float(negatives[max(needed, 1) - 1]), scores, above=True)


def fit_operating_points(
    probs: np.ndarray, targets: np.ndarray, target_sensitivity: float, target_specificity: float
) -> list[float]:
    """The cuts of ``OPERATING_POINTS`` on validation probabilities (NaN where undefined)."""
    targets_for = {"sensitivity": target_sensitivity, "specificity": target_specificity}
    finders = {"sensitivity": cut_for_sensitivity, "specificity": cut_for_specificity}
    cuts = []
    for level, kind in OPERATING_POINTS:
        start = REFERRAL_LEVELS[level]
        cut = finders[kind](referral_score(probs, start), targets >= start, targets_for[kind])
        cuts.append(float("nan") if cut is None else cut)
    return cuts


def uncertainty_cutoff(uncertainty: np.ndarray, refer_fraction: float) -> float:
    """The entropy above which the ``refer_fraction`` least certain validation images lie."""
    if refer_fraction <= 0 or len(uncertainty) == 0:
        return float("inf")
    return float(np.quantile(uncertainty, 1 - refer_fraction))
