"""One interval method per kind of figure: a proportion gets a Wilson score interval, everywhere.

A proportion (accuracy, per-grade precision and recall, referable sensitivity and specificity,
the error margins) is a count of successes out of a count of trials. Its percentile bootstrap
collapses at the bounds: 58 of 58 reads "1.000 (1.000-1.000)", as if certain. The Wilson score
interval does not (58/58: 0.938-1.000), and it is what the operating-point table gives for the
same counts, so one count has one interval in every table. Wilson counts images as independent
trials (fellow eyes are not merged); figures that are not proportions (F1, macro averages, AUROC,
QWK) keep the patient-level bootstrap of ``drgrade.evaluation.bootstrap``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from drgrade.grades import GRADES, REFERABLE_FROM

#: How each kind of figure's interval is drawn, in words (metrics.json and the report captions).
METHODS = {
    "wilson": "Wilson score 95% interval of the image counts",
    "bootstrap": "95% percentile bootstrap",
}


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval of a proportion (None when there are no trials)."""
    if trials == 0:
        return None
    interval = binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return [float(interval.low), float(interval.high)]


def proportion_counts(confusion: np.ndarray) -> dict[str, tuple[int, int]]:
    """(successes, trials) of every proportion in Table 3 and Table 4, from a confusion matrix.

    Args:
        confusion: counts [K, K], rows true grades, columns decided grades.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    total = int(confusion.sum())
    hits = np.diagonal(confusion)
    grades = np.arange(confusion.shape[0])
    gap = np.abs(grades[:, None] - grades[None, :])
    referable = grades >= REFERABLE_FROM
    counts = {
        "accuracy": (int(hits.sum()), total),
        "exact": (int(hits.sum()), total),
        "off_by_one": (int(confusion[gap == 1].sum()), total),
        "off_by_two_plus": (int(confusion[gap >= 2].sum()), total),
        "referable_sensitivity": (
            int(confusion[np.ix_(referable, referable)].sum()),
            int(confusion[referable].sum()),
        ),
        "referable_specificity": (
            int(confusion[np.ix_(~referable, ~referable)].sum()),
            int(confusion[~referable].sum()),
        ),
    }
    for grade in GRADES:
        k = grade.index
        counts[f"precision_{grade.short}"] = (int(hits[k]), int(confusion[:, k].sum()))
        counts[f"recall_{grade.short}"] = (int(hits[k]), int(confusion[k].sum()))
    return counts


def proportion_intervals(confusion: np.ndarray, level: float = 0.95) -> dict[str, list[float] | None]:
    """The Wilson interval of every proportion of ``proportion_counts`` (None where it has no trials)."""
    return {name: wilson_interval(s, n, level) for name, (s, n) in proportion_counts(confusion).items()}
