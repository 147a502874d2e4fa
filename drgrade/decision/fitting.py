"""Fitting the rule's scalars on the validation split: temperature, operating cuts, uncertainty cut.

- **Temperature** (Guo et al. 2017): the T minimising the validation negative log-likelihood of
  softmax(logits / T). NLL is convex in 1/T, hence unimodal in log T: scipy's bounded scalar
  minimiser over log T in [1e-3, 1e3] finds it deterministically (logit scales differ by orders
  of magnitude: a random-weight zero-shot model's logits differ by thousandths).
- **Operating cuts** (Gulshan et al., JAMA 2016; IDx-DR, Abramoff et al. 2018): for a referral
  score, among the cuts reaching a target sensitivity on validation, the one with the best
  specificity and then the best sensitivity (and the mirror image for a specificity target), so
  no operating point is dominated by another cut; placed in the middle of the gap between the
  neighbouring validation scores, as float32 represents them (robust to tiny shifts); only where
  two scores are one float32 step apart is the cut the upper score itself (``inside_gap``).
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


def operating_candidates(scores: np.ndarray, positive: np.ndarray) -> list[tuple[float, int, int]]:
    """Every distinct way ``score >= cut`` can split these images: (cut, true positives, true negatives).

    Two cuts between the same two neighbouring scores flag the same images, so each way is one gap
    between sorted distinct scores, and its cut is the middle of that gap (a score a hair away on
    another split does not flip). Below the lowest score: half of it (every image flagged); above
    the highest: halfway to 1 (none flagged). Scores and cuts are taken as float32 represents
    them, the precision at which the rule stores cuts and compares (``inside_gap``).
    """
    # the rule stores its cuts and compares scores in float32 (the ONNX graph's precision): count
    # on the scores as it will see them, and keep every cut strictly inside its float32 gap
    scores = np.asarray(scores, dtype=np.float32).astype(np.float64)
    values = np.unique(scores)
    if values.size == 0:
        return []
    # the images flagged by a cut just below values[j] are those with a score >= values[j]
    position = np.searchsorted(values, scores)
    pos_at = np.bincount(position[positive], minlength=values.size)
    neg_at = np.bincount(position[~positive], minlength=values.size)
    hits = np.cumsum(pos_at[::-1])[::-1]  # positives with score >= values[j]
    false_alarms = np.cumsum(neg_at[::-1])[::-1]
    negatives = int((~positive).sum())
    lower = np.concatenate(([0.0], values))
    upper = np.concatenate((values, [1.0]))
    cuts = inside_gap(lower, upper)
    cuts[0] = values[0] / 2  # below every score: flags them all, a score of 0 included
    hits = np.concatenate((hits, [0]))
    kept = negatives - np.concatenate((false_alarms, [0]))
    return [(float(c), int(h), int(k)) for c, h, k in zip(cuts, hits, kept, strict=True)]


def inside_gap(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The float32 cut in the middle of each gap ``(lower, upper]``, never on ``lower``.

    Two neighbouring scores can be a few float32 steps apart (a model whose probabilities are
    nearly flat): their float64 middle then rounds, when stored as float32, onto the lower score,
    and ``score >= cut`` would flag the image the gap was meant to leave out. Such a cut moves
    to the next float32 above ``lower`` (at most ``upper``), which splits the images as counted.
    """
    middle = ((lower + upper) / 2).astype(np.float32)
    low = lower.astype(np.float32)
    above = np.nextafter(low, np.float32(np.inf))
    return np.where(middle > low, middle, above).astype(np.float64)


def best_cut(scores: np.ndarray, positive: np.ndarray, target: float, kind: str) -> float | None:
    """The cut meeting ``target`` for ``kind`` that gives nothing away on these images.

    Among the cuts whose sensitivity (``kind="sensitivity"``) or specificity reaches ``target``,
    the one with the best *other* figure, then the best targeted one: a cut that caught fewer
    positives at the same specificity (or falsely flagged more negatives at the same sensitivity)
    would be dominated. The cut sits in the middle of its gap between validation scores.

    Args:
        scores: the referral score of every validation image [N].
        positive: whether each image is at or above the referral level [N].
        target: the sensitivity or specificity to reach.
        kind: ``sensitivity`` or ``specificity``.

    Returns:
        The cut, or None when the targeted class is absent (nothing to measure it on).
    """
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if (positives if kind == "sensitivity" else negatives) == 0:
        return None
    candidates = []
    for cut, hits, kept in operating_candidates(scores, positive):
        sensitivity = hits / positives if positives else 1.0
        specificity = kept / negatives if negatives else 1.0
        targeted, other = (sensitivity, specificity) if kind == "sensitivity" else (specificity, sensitivity)
        if targeted >= target - 1e-12:
            candidates.append((other, targeted, cut))
    return max(candidates)[2] if candidates else None


def cut_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The cut reaching ``target`` sensitivity with the best specificity, then sensitivity (``best_cut``)."""
    return best_cut(scores, positive, target, "sensitivity")


def cut_for_specificity(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The cut keeping ``target`` specificity with the best sensitivity, then specificity (``best_cut``)."""
    return best_cut(scores, positive, target, "specificity")


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
