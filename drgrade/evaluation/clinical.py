"""The clinical side of an evaluation: operating points, calibration and uncertainty referral.

What a screening programme asks of a grader beyond Table 3, each as its clinical anchors report it:

- **Operating points** (Gulshan et al., JAMA 2016; the IDx-DR trial, Abramoff et al. 2018): a
  binary referral score from the grade probabilities (referable DR = P(grade >= moderate),
  vision-threatening DR = P(grade >= severe)), a cut chosen on *validation* for a target
  sensitivity and one for a target specificity, applied unchanged to test, reported as
  sensitivity and specificity with Wilson 95% intervals.
- **Calibration**: expected calibration error over 15 equal-width confidence bins, and a single
  temperature fitted on validation by minimising the negative log-likelihood (Guo et al. 2017).
- **Uncertainty-informed referral** (Leibig et al. 2017; Band et al. 2021): refer the least
  certain images to a human and measure the rest.

Torch-free NumPy, so ``drgrade report`` and the ONNX runner can use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from drgrade.evaluation.bootstrap import binary_scores, confusion_metrics, weighted_confusion
from drgrade.grades import REFERABLE_FROM, VISION_THREATENING_FROM

#: The referral scores and the grade each starts at.
REFERRAL_LEVELS = {"referable": REFERABLE_FROM, "vtdr": VISION_THREATENING_FROM}
#: The operating points stored in a checkpoint, in this order: (score, what the cut targets).
OPERATING_POINTS: tuple[tuple[str, str], ...] = (
    ("referable", "sensitivity"),
    ("referable", "specificity"),
    ("vtdr", "sensitivity"),
    ("vtdr", "specificity"),
)
#: Fractions of images referred to a human along a referral curve.
REFERRAL_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(11))
ECE_BINS = 15


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> list[float] | None:
    """Wilson score interval of a proportion (None when there are no trials).

    Args:
        successes: events counted.
        trials: the population.
        z: the normal quantile (1.96 for 95%).
    """
    if trials == 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _midway(value: float, neighbours: np.ndarray, above: bool) -> float:
    """A cut midway between ``value`` and the nearest score on the given side (robust to shifts)."""
    side = neighbours[neighbours > value] if above else neighbours[neighbours < value]
    if side.size == 0:
        return value + 1e-9 if above else value / 2
    nearest = side.min() if above else side.max()
    return float((value + nearest) / 2)


def cut_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The highest cut whose rule ``score >= cut`` reaches ``target`` sensitivity on these images.

    Args:
        scores: referral scores [N].
        positive: whether each image is truly referable [N].
        target: the sensitivity to reach, in (0, 1].
    """
    hits = np.sort(scores[positive])[::-1]
    if hits.size == 0:
        return None
    needed = math.ceil(target * hits.size - 1e-9)
    value = hits[max(needed, 1) - 1]
    return _midway(float(value), scores, above=False)


def cut_for_specificity(scores: np.ndarray, positive: np.ndarray, target: float) -> float | None:
    """The lowest cut whose rule ``score >= cut`` keeps ``target`` specificity on these images.

    Args:
        scores: referral scores [N].
        positive: whether each image is truly referable [N].
        target: the specificity to keep, in (0, 1].
    """
    negatives = np.sort(scores[~positive])
    if negatives.size == 0:
        return None
    needed = math.ceil(target * negatives.size - 1e-9)
    value = negatives[max(needed, 1) - 1]
    return _midway(float(value), scores, above=True)


def fit_operating_points(
    probs: np.ndarray, targets: np.ndarray, target_sensitivity: float, target_specificity: float
) -> list[float]:
    """The cuts of ``OPERATING_POINTS`` on validation probabilities (NaN where undefined)."""
    scores = binary_scores(probs)
    targets_for = {"sensitivity": target_sensitivity, "specificity": target_specificity}
    finders = {"sensitivity": cut_for_sensitivity, "specificity": cut_for_specificity}
    cuts = []
    for level, kind in OPERATING_POINTS:
        cut = finders[kind](scores[level], targets >= REFERRAL_LEVELS[level], targets_for[kind])
        cuts.append(float("nan") if cut is None else cut)
    return cuts


def _sensitivity_specificity(flagged: np.ndarray, positive: np.ndarray) -> dict:
    true_pos, positives = int((flagged & positive).sum()), int(positive.sum())
    true_neg, negatives = int((~flagged & ~positive).sum()), int((~positive).sum())
    return {
        "sensitivity": true_pos / positives if positives else None,
        "sensitivity_ci": wilson_interval(true_pos, positives),
        "specificity": true_neg / negatives if negatives else None,
        "specificity_ci": wilson_interval(true_neg, negatives),
        "positives": positives,
        "negatives": negatives,
    }


def apply_operating_points(
    probs: np.ndarray, targets: np.ndarray, cuts: Sequence[float], targets_by_kind: dict[str, float]
) -> list[dict]:
    """Sensitivity and specificity (Wilson 95%) of each stored cut on these images.

    Args:
        probs: probabilities [N, K].
        targets: true grades [N].
        cuts: one per ``OPERATING_POINTS`` entry.
        targets_by_kind: the validation targets the cuts were chosen for, by kind.
    """
    scores = binary_scores(probs)
    points = []
    for (level, kind), cut in zip(OPERATING_POINTS, cuts, strict=True):
        if not math.isfinite(cut):
            continue
        flagged = scores[level] >= cut
        points.append(
            {
                "name": f"{level}@{kind}{targets_by_kind[kind]:.2f}",
                "threshold": float(cut),
                **_sensitivity_specificity(flagged, targets >= REFERRAL_LEVELS[level]),
            }
        )
    return points


def per_patient_operating_points(
    probs: np.ndarray, targets: np.ndarray, patients: Sequence[str], cuts: Sequence[float], names: list[str]
) -> dict:
    """IDx-DR's unit: a patient is referred when any of their images is; truth is their worst eye.

    Args:
        probs: probabilities [N, K].
        targets: true grades [N].
        patients: each image's patient id.
        cuts: one per ``OPERATING_POINTS`` entry.
        names: the operating points' names, as ``apply_operating_points`` gave them.
    """
    _, codes = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    count = int(codes.max()) + 1
    worst = np.full(count, -1)
    np.maximum.at(worst, codes, targets)
    scores = binary_scores(probs)
    points = []
    defined = [
        (level, cut) for (level, _), cut in zip(OPERATING_POINTS, cuts, strict=True) if math.isfinite(cut)
    ]
    for name, (level, cut) in zip(names, defined, strict=True):
        flagged = np.zeros(count, dtype=bool)
        np.logical_or.at(flagged, codes, scores[level] >= cut)
        points.append(
            {
                "name": name,
                "threshold": float(cut),
                **_sensitivity_specificity(flagged, worst >= REFERRAL_LEVELS[level]),
            }
        )
    return {"num_patients": count, "operating_points": points}


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the image-weighted mean |accuracy - confidence| over equal-width bins."""
    table = reliability_table(probs, targets, bins)
    total = table["count"].sum()
    if total == 0:
        return float("nan")
    gap = np.abs(table["accuracy"] - table["confidence"])
    return float(np.nansum(gap * table["count"]) / total)


def reliability_table(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: image count, mean confidence and accuracy (NaN for empty bins)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == targets
    # bins (lo, hi]: a confidence of exactly 1/K..1 falls in one bin; 0 joins the first
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct.astype(float), bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row softmax of ``logits / temperature`` in float64."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean NLL of the targets under ``softmax(logits / temperature)``."""
    probs = softmax(logits, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-300, None)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, low: float = 1e-3, high: float = 1e3) -> float:
    """The temperature minimising validation NLL: golden-section search on log T.

    NLL is convex in 1/T, hence unimodal in log T, so the search finds the optimum inside
    ``[low, high]`` deterministically without a learning rate to tune. The bracket is wide
    because logit scales differ by orders of magnitude (a random-weight zero-shot model's
    logits differ by thousandths).

    Args:
        logits: validation logits [N, K] (log-probabilities work equally).
        targets: validation grades [N].
        low: the smallest temperature considered.
        high: the largest.
    """
    if len(targets) == 0:
        return 1.0
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):  # the bracket shrinks by 0.618 per step: far below any useful precision
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if negative_log_likelihood(logits, targets, math.exp(c)) < negative_log_likelihood(
            logits, targets, math.exp(d)
        ):
            b = d
        else:
            a = c
    return math.exp((a + b) / 2)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy (nats) per row: the uncertainty ``predict`` reports."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


def uncertainty_cutoff(probs: np.ndarray, refer_fraction: float) -> float:
    """The entropy above which the ``refer_fraction`` least certain validation images lie."""
    if refer_fraction <= 0 or len(probs) == 0:
        return float("inf")
    return float(np.quantile(entropy(probs), 1 - refer_fraction))


def referral_curves(probs: np.ndarray, targets: np.ndarray, preds: np.ndarray) -> dict:
    """Metrics of the images kept when the x% least certain are referred, x in ``REFERRAL_FRACTIONS``.

    Uncertainty by predictive entropy and by 1 - max probability. ``auc_accuracy`` is the area
    under the accuracy-referral curve over x in [0, 0.5], divided by 0.5 (a mean accuracy).
    """
    n = len(targets)
    measures = {"entropy": entropy(probs), "max_probability": -probs.max(1)}
    fractions = np.asarray(REFERRAL_FRACTIONS)
    curves: dict = {"fractions": list(REFERRAL_FRACTIONS)}
    auc = {}
    for name, uncertainty in measures.items():
        order = np.argsort(uncertainty, kind="stable")  # most certain first
        weights = np.zeros((len(fractions), n))
        for row, fraction in enumerate(fractions):
            weights[row, order[: max(1, n - round(float(fraction) * n))]] = 1.0
        values = confusion_metrics(weighted_confusion(weights, targets, preds))
        keys = ("accuracy", "qwk", "referable_sensitivity", "referable_specificity")
        curves[name] = {key: [None if np.isnan(v) else float(v) for v in values[key]] for key in keys}
        auc[name] = float(np.trapezoid(values["accuracy"], fractions) / (fractions[-1] - fractions[0]))
    curves["auc_accuracy"] = auc
    return curves
