"""Figures over repeated runs: t intervals of a mean, and paired tests between two models.

Each run (a seed, a fold, a held-out source, a shot budget) gives one value per model. The mean
over runs is reported with the t interval ``mean +- t(0.975, n-1) * sd / sqrt(n)``. Two models
evaluated on the same runs are compared on their per-run differences ``d``:

- over seeds alone (independent training and test draws): the paired t test,
  ``t = mean(d) / sqrt(var(d) / n)``, which is ``scipy.stats.ttest_rel``;
- over k folds (repeated): the corrected resampled t test of Nadeau and Bengio (2003),
  ``t = mean(d) / sqrt((1/n + n_test/n_train) * var(d))``: the folds share training images, so
  the runs are not independent and the plain paired t test would be overconfident.

Both use n - 1 degrees of freedom and a two-sided p value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, t interval and count of ``values`` (no interval from fewer than two runs).

    Args:
        values: one value per run (undefined runs already left out).
        level: the interval's coverage.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None, "sd": None}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "low": None, "high": None, "sd": None}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half, "sd": sd}


def paired_test(
    first: Sequence[float],
    second: Sequence[float],
    test_train_ratio: float | None = None,
    level: float = 0.95,
) -> dict:
    """Compare two models' values on the same runs: paired t, or Nadeau-Bengio corrected with a ratio.

    Args:
        first: the first model's value per run.
        second: the second model's value on the same runs, in the same order.
        test_train_ratio: n_test / n_train of the k-fold runs (None: runs over seeds, plain paired t).
        level: the coverage of the difference's interval.

    Returns:
        ``test``, ``n``, ``mean_difference`` (first - second), its interval, ``t``, ``df`` and ``p``
        (None where fewer than two runs or no spread make them undefined).
    """
    d = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    n = len(d)
    test = "paired t" if test_train_ratio is None else "corrected resampled t (Nadeau-Bengio)"
    out = {"test": test, "n": n, "mean_difference": float(d.mean()) if n else None}
    out |= {"low": None, "high": None, "t": None, "df": n - 1 if n > 1 else None, "p": None}
    if n < 2:
        return out
    variance = float(d.var(ddof=1))
    factor = 1 / n if test_train_ratio is None else 1 / n + test_train_ratio
    se = math.sqrt(factor * variance)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * se
    out |= {"low": out["mean_difference"] - half, "high": out["mean_difference"] + half}
    if se > 0:
        t = out["mean_difference"] / se
        out |= {"t": t, "p": float(2 * stats.t.sf(abs(t), n - 1))}
    return out
