"""Confusion matrices and quadratic weighted kappa: the one implementation every QWK in drgrade uses.

Split metrics, bootstrap resamples (stacks of weighted confusion matrices) and the threshold
search (hundreds of candidate rules per validation pass) all call ``quadratic_weighted_kappa``;
it equals scikit-learn's ``cohen_kappa_score(weights="quadratic")`` (tested).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [K, K]: rows true grade, columns decided grade."""
    cells = np.asarray(targets, np.int64) * num_classes + np.asarray(preds, np.int64)
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def quadratic_weighted_kappa(confusion: np.ndarray) -> np.ndarray:
    """QWK of each confusion matrix in a stack [..., K, K] (weighted counts allowed).

    NaN where it is undefined: no images, or every image in one true and one decided grade
    (chance agreement is then total, and kappa's denominator is zero).
    """
    confusion = np.asarray(confusion, np.float64)
    k = confusion.shape[-1]
    total = confusion.sum((-2, -1))
    true_counts, pred_counts = confusion.sum(-1), confusion.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = true_counts[..., :, None] * pred_counts[..., None, :] / total[..., None, None]
        grades = np.arange(k)
        weights = (grades[:, None] - grades[None, :]) ** 2.0
        observed = (weights * confusion).sum((-2, -1))
        chance = (weights * expected).sum((-2, -1))
        return np.where(chance > 0, 1.0 - observed / np.where(chance > 0, chance, 1.0), np.nan)


def qwk(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> float | None:
    """QWK of one set of decisions; None where undefined."""
    value = float(quadratic_weighted_kappa(confusion_matrix(targets, preds, num_classes)))
    return None if np.isnan(value) else value
