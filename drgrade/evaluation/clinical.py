"""The clinical side of an evaluation: operating points, calibration error and uncertainty referral.

What a screening programme asks of a grader beyond Table 3, each as its clinical anchors report it:

- **Operating points** (Gulshan et al., JAMA 2016; the IDx-DR trial, Abramoff et al. 2018): the
  decision rule's referral flags at cuts chosen on *validation*, applied unchanged to this split,
  reported as sensitivity and specificity with Wilson 95% intervals, per image and per patient.
- **Calibration**: expected calibration error over 15 equal-width bins of the top-label
  confidence (torchmetrics), before and after the validation temperature, and a classwise ECE
  (every grade's probability against its one-vs-rest truth), which also covers thresholded rules.
- **Uncertainty-informed referral** (Leibig et al. 2017; Band et al. 2021): refer the least
  certain images to a human and measure the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.integrate import trapezoid  # NumPy 1.26, which drgrade admits, has no np.trapezoid
from scipy.stats import binomtest
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from drgrade.evaluation.bootstrap import confusion_metrics, weighted_confusion
from drgrade.grades import NUM_GRADES, REFERRAL_LEVELS

#: Fractions of images referred to a human along a referral curve.
REFERRAL_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(11))
ECE_BINS = 15


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval of a proportion (None when there are no trials)."""
    if trials == 0:
        return None
    interval = binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return [float(interval.low), float(interval.high)]


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


def operating_point_name(point: dict) -> str:
    """``referable@sensitivity0.90``: the level, what the cut targeted and the target."""
    return f"{point['level']}@{point['target']}{point['goal']:.2f}"


def apply_operating_points(flags: np.ndarray, targets: np.ndarray, points: Sequence[dict]) -> list[dict]:
    """Sensitivity and specificity (Wilson 95%) of each operating point with a defined cut.

    Args:
        flags: [N, P] the rule's referral flags per operating point.
        targets: true grades [N].
        points: the rule's operating points (``DecisionRule.describe()["operating_points"]``).
    """
    return [
        {
            "name": operating_point_name(point),
            "threshold": point["cut"],
            **_sensitivity_specificity(flags[:, i], targets >= REFERRAL_LEVELS[point["level"]]),
        }
        for i, point in enumerate(points)
        if point["cut"] is not None
    ]


def per_patient_operating_points(
    flags: np.ndarray, targets: np.ndarray, patients: Sequence[str], points: Sequence[dict]
) -> dict:
    """IDx-DR's unit: a patient is referred when any of their images is; truth is their worst eye.

    Args:
        flags: [N, P] the rule's referral flags per operating point.
        targets: true grades [N].
        patients: each image's patient id.
        points: the rule's operating points.
    """
    _, codes = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    count = int(codes.max()) + 1
    worst = np.full(count, -1)
    np.maximum.at(worst, codes, targets)
    out = []
    for i, point in enumerate(points):
        if point["cut"] is None:
            continue
        referred = np.zeros(count, dtype=bool)
        np.logical_or.at(referred, codes, flags[:, i])
        positive = worst >= REFERRAL_LEVELS[point["level"]]
        out.append(
            {
                "name": operating_point_name(point),
                "threshold": point["cut"],
                **_sensitivity_specificity(referred, positive),
            }
        )
    return {"num_patients": count, "operating_points": out}


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: confidence (max probability) against argmax accuracy, bins [lo, hi) (torchmetrics)."""
    if len(targets) == 0:
        return float("nan")
    return float(
        multiclass_calibration_error(
            torch.as_tensor(probs, dtype=torch.float64),
            torch.as_tensor(targets),
            NUM_GRADES,
            n_bins=bins,
            norm="l1",
        )
    )


def classwise_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean over grades of the ECE of P(grade k) against "the image is grade k" (decision-free)."""
    if len(targets) == 0:
        return float("nan")
    probs_t, targets_t = torch.as_tensor(probs, dtype=torch.float64), torch.as_tensor(targets)
    return float(
        np.mean(
            [
                float(
                    binary_calibration_error(
                        probs_t[:, k].contiguous(), (targets_t == k).long(), n_bins=bins, norm="l1"
                    )
                )
                for k in range(NUM_GRADES)
            ]
        )
    )


def reliability_table(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin ([lo, hi), as the ECE): image count, mean confidence and accuracy (NaN if empty)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == targets
    which = np.clip(np.floor(confidence * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct.astype(float), bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def referral_curves(
    probs: np.ndarray, targets: np.ndarray, preds: np.ndarray, uncertainty: np.ndarray
) -> dict:
    """Metrics of the images kept when the x% least certain are referred, x in ``REFERRAL_FRACTIONS``.

    Uncertainty by predictive entropy (the rule's ``uncertainty``) and by 1 - max probability.
    ``auc_accuracy`` is the area under the accuracy-referral curve over x in [0, 0.5], divided by
    0.5 (a mean accuracy).
    """
    n = len(targets)
    measures = {"entropy": uncertainty, "max_probability": -probs.max(1)}
    fractions = np.asarray(REFERRAL_FRACTIONS)
    curves: dict = {"fractions": list(REFERRAL_FRACTIONS)}
    auc = {}
    for name, measure in measures.items():
        order = np.argsort(measure, kind="stable")  # most certain first
        weights = np.zeros((len(fractions), n))
        for row, fraction in enumerate(fractions):
            weights[row, order[: max(1, n - round(float(fraction) * n))]] = 1.0
        values = confusion_metrics(weighted_confusion(weights, targets, preds))
        keys = ("accuracy", "qwk", "referable_sensitivity", "referable_specificity")
        curves[name] = {key: [None if np.isnan(v) else float(v) for v in values[key]] for key in keys}
        auc[name] = float(trapezoid(values["accuracy"], fractions) / (fractions[-1] - fractions[0]))
    curves["auc_accuracy"] = auc
    return curves
