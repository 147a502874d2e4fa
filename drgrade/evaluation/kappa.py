"""Weighted confusion matrices and quadratic weighted kappa: the one definition of each in drgrade.

Split metrics, bootstrap resamples (stacks of weighted confusion matrices) and the threshold
search (hundreds of candidate rules per validation pass) all count with ``weighted_confusion``
and score with ``quadratic_weighted_kappa``; ``qwk`` is the one QWK of a set of decisions. It
equals scikit-learn's ``cohen_kappa_score(weights="quadratic")`` (tested). Its arguments are
keyword-only, so the true grades and the decisions can never be passed the wrong way round.
"""

from __future__ import annotations

import numpy as np

from drgrade.grades import NUM_GRADES


def weighted_confusion(weights: np.ndarray, targets: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Confusion matrices [b, K, K] (rows true grade, columns decided grade) of per-image weights [b, N].

    A bootstrap resample is a row of draw counts; the split itself is one row of ones.
    """
    targets, preds = np.asarray(targets, np.int64), np.asarray(preds, np.int64)
    cells = np.zeros((targets.size, NUM_GRADES * NUM_GRADES))
    cells[np.arange(targets.size), targets * NUM_GRADES + preds] = 1.0
    return (np.asarray(weights, np.float64) @ cells).reshape(-1, NUM_GRADES, NUM_GRADES)


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


def qwk(*, targets, preds, undefined: float | None = None) -> float | None:
    """QWK of decided grades against true grades (NumPy arrays or CPU tensors).

    Args:
        targets: the true grades [N].
        preds: the decided grades [N].
        undefined: the value where kappa is undefined (None in results; a search that must
            compare numbers passes 0.0, chance agreement).
    """
    ones = np.ones((1, len(targets)))
    value = float(quadratic_weighted_kappa(weighted_confusion(ones, targets, preds))[0])
    return undefined if np.isnan(value) else value
