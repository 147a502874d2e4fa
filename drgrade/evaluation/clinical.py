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
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from drgrade.evaluation.bootstrap import confusion_metrics
from drgrade.evaluation.kappa import weighted_confusion
from drgrade.evaluation.proportions import wilson_interval
from drgrade.grades import NUM_GRADES, REFERRAL_LEVELS, referral_score

#: Fractions of images referred to a human along a referral curve.
REFERRAL_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(11))
ECE_BINS = 15


def sensitivity_specificity(flagged: np.ndarray, positive: np.ndarray) -> dict:
    """Sensitivity and specificity of ``flagged`` for ``positive``, each with its Wilson 95% interval."""
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


#: How near a cut (on the referral score's 0-1 scale) an image counts as "a hair away": one that
#: close would flip with a tiny change of weights, hardware or preprocessing.
NEAR_CUT_MARGIN = 1e-3


def apply_operating_points(
    flags: np.ndarray, targets: np.ndarray, points: Sequence[dict], probs: np.ndarray
) -> list[dict]:
    """Sensitivity and specificity (Wilson 95%) of each operating point with a defined cut.

    Each point also counts the images whose referral score lies within ``NEAR_CUT_MARGIN`` of
    its cut (``near_cut``): how much of the result rests on a hair's breadth.

    Args:
        flags: [N, P] the rule's referral flags per operating point.
        targets: true grades [N].
        points: the rule's operating points (``DecisionRule.describe()["operating_points"]``).
        probs: the rule's probabilities [N, K], for each point's referral score.
    """
    out = []
    for i, point in enumerate(points):
        if point["cut"] is None:
            continue
        start = REFERRAL_LEVELS[point["level"]]
        near = np.abs(referral_score(np.asarray(probs, np.float64), start) - point["cut"]) <= NEAR_CUT_MARGIN
        out.append(
            {
                "name": operating_point_name(point),
                "threshold": point["cut"],
                **sensitivity_specificity(flags[:, i], targets >= start),
                "near_cut": int(near.sum()),
                "near_cut_margin": NEAR_CUT_MARGIN,
            }
        )
    return out


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
                **sensitivity_specificity(referred, positive),
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


def reliability_table(
    probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS, decided: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per confidence bin ([lo, hi), as the ECE): image count, mean confidence and accuracy (NaN if empty).

    Args:
        probs: probabilities [N, K].
        targets: true grades [N].
        bins: equal-width bins over [0, 1].
        decided: the grades a rule decided [N]; the confidence is then each decided grade's
            probability and the accuracy that of the decided grades (default: the argmax's).
    """
    decided = probs.argmax(1) if decided is None else np.asarray(decided)
    confidence = probs[np.arange(len(decided)), decided]
    correct = decided == targets
    which = np.clip(np.floor(confidence * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct.astype(float), bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def table_calibration_error(table: dict[str, np.ndarray]) -> float:
    """The ECE a reliability table shows: the count-weighted mean gap between accuracy and confidence."""
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float((table["count"][filled] * gaps).sum() / table["count"].sum())


def referral_curves(
    probs: np.ndarray,
    targets: np.ndarray,
    preds: np.ndarray,
    uncertainty: np.ndarray,
    cutoff: float | None = None,
) -> dict:
    """Metrics of the images kept when the x% least certain are referred, x in ``REFERRAL_FRACTIONS``.

    Uncertainty by predictive entropy (the rule's ``uncertainty``) and by 1 - max probability.
    ``auc_accuracy`` is the area under the accuracy-referral curve over x in [0, 0.5], divided by
    0.5 (a mean accuracy). ``kept`` counts the images kept at each x; ``deployed`` is what the
    rule's own entropy cut (fitted on validation) refers on this split.

    Args:
        probs: probabilities [N, K].
        targets: true grades [N].
        preds: decided grades [N].
        uncertainty: the rule's entropy per image [N].
        cutoff: the rule's entropy cut (None: never refers).
    """
    n = len(targets)
    measures = {"entropy": uncertainty, "max_probability": -probs.max(1)}
    fractions = np.asarray(REFERRAL_FRACTIONS)
    kept = [max(1, n - round(float(fraction) * n)) for fraction in fractions]
    curves: dict = {"fractions": list(REFERRAL_FRACTIONS), "kept": kept}
    auc = {}
    for name, measure in measures.items():
        order = np.argsort(measure, kind="stable")  # most certain first
        weights = np.zeros((len(fractions), n))
        for row, count in enumerate(kept):
            weights[row, order[:count]] = 1.0
        values = confusion_metrics(weighted_confusion(weights, targets, preds))
        keys = ("accuracy", "qwk", "referable_sensitivity", "referable_specificity")
        curves[name] = {key: [None if np.isnan(v) else float(v) for v in values[key]] for key in keys}
        auc[name] = float(trapezoid(values["accuracy"], fractions) / (fractions[-1] - fractions[0]))
    curves["auc_accuracy"] = auc
    referred = 0 if cutoff is None else int((uncertainty > cutoff).sum())
    curves["deployed"] = {
        "uncertainty_cutoff": cutoff,
        "referred": referred,
        "referred_fraction": referred / n if n else None,
    }
    return curves
