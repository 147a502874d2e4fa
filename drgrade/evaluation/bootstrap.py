"""Patient-level bootstrap confidence intervals for every Table 3 figure, in NumPy.

A resample draws *patients* with replacement (both eyes of a Messidor-2 exam travel together, so
correlated eyes do not narrow the interval) and is represented by how many times each image was
drawn: a weight vector. Every metric is then a function of weighted counts, computed for all
resamples at once:

- the confusion matrix of a resample is the weighted count of each (true, predicted) cell, from
  which accuracy, per-class and macro precision / recall / F1, QWK, the error margins and the
  referable sensitivity / specificity follow (an undefined per-class value is NaN in that
  resample). Like the macro AUROC below, a macro precision / recall / F1 of a resample averages
  a *fixed* set of grades, those the whole split defines it for (decided, present, either), and
  is NaN when the resample leaves one undefined;
- AUROC is the weighted Mann-Whitney statistic (ties count one half), which equals the
  trapezoidal ROC area torchmetrics and scikit-learn compute; a class absent from a resample
  gives NaN (torchmetrics draws the curves). The macro AUROC of a resample averages a *fixed*
  set of grades, those with a defined AUROC on the whole split, and is NaN when the resample
  lacks one of them (averaging whichever grades a resample happens to hold would mix
  different quantities).

With all weights 1 these functions *are* the point estimate (``metrics.compute_metrics`` calls
them with one row of ones): one definition of every figure, resampled or not. 2,000
resamples of a 1,000-image split take well under a second per metric family (``make bench``).
Intervals are percentile intervals over the resamples where the metric is defined; how many
resamples left a metric undefined is reported beside them (``undefined_resamples``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from drgrade.evaluation.kappa import quadratic_weighted_kappa, weighted_confusion
from drgrade.grades import GRADES, NUM_GRADES, REFERABLE_FROM, REFERRAL_LEVELS, referral_score

#: Resamples per chunk: bounds memory on large splits (chunk x images float64 arrays).
_CHUNK = 250


@dataclass(frozen=True)
class BootstrapSpec:
    """How intervals are drawn: resamples, seed, the resampled unit and the coverage."""

    resamples: int = 2000
    seed: int = 0
    level: float = 0.95

    def describe(self, units: dict[str, dict]) -> dict:
        """The ``bootstrap`` entry of metrics.json.

        Args:
            units: ``resampling_units``: what one draw is, per source.
        """
        kinds = {u["unit"] for u in units.values()}
        unit = kinds.pop() if len(kinds) == 1 else "patient or image (per source)"
        return {
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
            "unit": unit,
            "units": units,
        }


def resampling_units(
    patients: Sequence[str], sources: Sequence[str], names_patients: Mapping[str, bool]
) -> dict[str, dict]:
    """Per source, what one bootstrap draw is: a patient where the dataset names patients, else an image.

    APTOS, IDRiD and DDR publish no patient ids, so their images are drawn one by one (copies the
    duplicate check merged are drawn together); Messidor-2 exams and EyePACS left/right pairs are
    drawn whole. A CSV source names patients when its sheet has a ``patient_id`` column that
    groups images.

    Args:
        patients: each image's patient (group) id.
        sources: each image's source.
        names_patients: whether each native source's layout names patients.
    """
    out = {}
    for source in sorted(set(sources)):
        ids = [p for p, s in zip(patients, sources, strict=True) if s == source]
        groups = len(set(ids))
        named = names_patients.get(source, groups < len(ids))
        out[source] = {"unit": "patient" if named else "image", "images": len(ids), "draws": groups}
    return out


def unit_phrase(units: Mapping[str, dict]) -> str:
    """What the intervals resample, in words: ``patients``, ``images``, or which for which source."""
    kinds = {u["unit"] for u in units.values()}
    if len(kinds) == 1:
        return f"{kinds.pop()}s"
    listed = ", ".join(f"{source}: {u['unit']}s" for source, u in units.items())
    return f"patients where the dataset gives them, images otherwise ({listed})"


def resample_weights(patients: Sequence[str], spec: BootstrapSpec) -> Iterator[np.ndarray]:
    """Chunks [b, N] of per-image draw counts, one row per resample of the patients.

    Args:
        patients: each image's patient id (images of one patient are drawn together).
        spec: resamples and seed.
    """
    _, codes = np.unique(np.asarray(patients, dtype=object).astype(str), return_inverse=True)
    num_patients = int(codes.max()) + 1 if len(codes) else 0
    rng = np.random.default_rng(spec.seed)
    for start in range(0, spec.resamples, _CHUNK):
        size = min(_CHUNK, spec.resamples - start)
        draws = rng.integers(0, num_patients, size=(size, num_patients))
        offsets = draws + num_patients * np.arange(size)[:, None]
        counts = np.bincount(offsets.ravel(), minlength=size * num_patients).reshape(size, num_patients)
        yield counts[:, codes].astype(np.float64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray, undefined: float) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, undefined, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def macro_grades(targets: np.ndarray, preds: np.ndarray) -> dict[str, np.ndarray]:
    """The grades each macro average of a split covers: decided (precision), present (recall), either (F1)."""
    decided = np.bincount(preds, minlength=NUM_GRADES) > 0
    true = np.bincount(targets, minlength=NUM_GRADES) > 0
    return {"precision": decided, "recall": true, "f1": decided | true}


def _fixed_mean(values: np.ndarray, grades: np.ndarray) -> np.ndarray:
    """Per resample, the mean of ``values`` [b, K] over ``grades``; NaN where one of them is undefined."""
    if not grades.any():
        return np.full(len(values), np.nan)
    return values[:, grades].mean(1)


def confusion_metrics(
    confusion: np.ndarray, grades: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every confusion-derived metric for a stack of confusion matrices [b, K, K].

    Rows are true grades, columns decided grades.

    Args:
        confusion: the stack.
        grades: the grades each macro average covers (``macro_grades`` of the whole split);
            default: those of the summed stack (one matrix: its own).
    """
    k = confusion.shape[-1]
    true_counts, pred_counts = confusion.sum(2), confusion.sum(1)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    total = confusion.sum((1, 2))
    precision = _safe_divide(hits, pred_counts, np.nan)
    recall = _safe_divide(hits, true_counts, np.nan)
    f1 = _safe_divide(2 * hits, pred_counts + true_counts, np.nan)
    if grades is None:
        summed = confusion.sum(0)
        grades = {"precision": summed.sum(0) > 0, "recall": summed.sum(1) > 0}
        grades["f1"] = grades["precision"] | grades["recall"]
    index = np.arange(k)
    gap = np.abs(index[:, None] - index[None, :])
    referable = index >= REFERABLE_FROM
    out = {
        "accuracy": _safe_divide(hits.sum(1), total, np.nan),
        "macro_precision": _fixed_mean(precision, grades["precision"]),
        "macro_recall": _fixed_mean(recall, grades["recall"]),
        "macro_f1": _fixed_mean(f1, grades["f1"]),
        "qwk": quadratic_weighted_kappa(confusion),
        "referable_sensitivity": _safe_divide(
            confusion[:, referable][:, :, referable].sum((1, 2)), true_counts[:, referable].sum(1), np.nan
        ),
        "referable_specificity": _safe_divide(
            confusion[:, ~referable][:, :, ~referable].sum((1, 2)), true_counts[:, ~referable].sum(1), np.nan
        ),
        "off_by_one": _safe_divide((confusion * (gap == 1)).sum((1, 2)), total, np.nan),
        "off_by_two_plus": _safe_divide((confusion * (gap >= 2)).sum((1, 2)), total, np.nan),
    }
    out["exact"] = out["accuracy"]  # Table 4's exact-match share is the accuracy
    for grade in GRADES:
        out[f"precision_{grade.short}"] = precision[:, grade.index]
        out[f"recall_{grade.short}"] = recall[:, grade.index]
        out[f"f1_{grade.short}"] = f1[:, grade.index]
    return out


def weighted_auroc(weights: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC [b] of ``scores`` for ``positive`` under each resample's image weights [b, N].

    The Mann-Whitney form: the weighted share of (positive, negative) pairs ordered correctly,
    ties counting one half. NaN where a resample has no positive or no negative.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    is_positive = positive[order]
    pos = np.add.reduceat(w * is_positive, starts, axis=1)
    neg = np.add.reduceat(w * ~is_positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    numerator = (pos * (below + 0.5 * neg)).sum(1)
    return _safe_divide(numerator, pos.sum(1) * neg.sum(1), np.nan)


def auroc_metrics(weights: np.ndarray, probs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-grade one-vs-rest AUROC, their macro mean, and the referable / VTDR score AUROCs."""
    out: dict[str, np.ndarray] = {}
    per_grade = []
    for grade in GRADES:
        value = weighted_auroc(weights, probs[:, grade.index], targets == grade.index)
        out[f"auroc_{grade.short}"] = value
        per_grade.append(value)
    counts = np.bincount(targets, minlength=NUM_GRADES)
    fixed = (counts > 0) & (counts < len(targets))  # the grades the whole split's macro AUROC averages
    stacked = np.stack(per_grade, axis=1)[:, fixed]
    out["auroc_macro"] = stacked.mean(1) if fixed.any() else np.full(len(weights), np.nan)
    for level, start in REFERRAL_LEVELS.items():
        out[f"{level}_auroc"] = weighted_auroc(weights, referral_score(probs, start), targets >= start)
    return out


def resampled_metrics(
    weights: np.ndarray, probs: np.ndarray, targets: np.ndarray, preds: np.ndarray
) -> dict[str, np.ndarray]:
    """Every bootstrapped metric [b] for weight rows [b, N]."""
    grades = macro_grades(targets, preds)
    return confusion_metrics(weighted_confusion(weights, targets, preds), grades) | auroc_metrics(
        weights, probs, targets
    )


def _stacked(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def percentile_interval(values: np.ndarray, level: float) -> list[float] | None:
    """The central ``level`` percentile interval of the defined values (None when none is)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def confidence_intervals(
    probs: np.ndarray, targets: np.ndarray, preds: np.ndarray, patients: Sequence[str], spec: BootstrapSpec
) -> tuple[dict[str, list[float] | None], dict[str, int]]:
    """Percentile intervals for every bootstrapped metric, resampling patients.

    Args:
        probs: probabilities [N, K].
        targets: true grades [N].
        preds: decided grades [N].
        patients: each image's patient id.
        spec: resamples, seed and level.

    Returns:
        (interval per metric, None where no resample defines it; how many resamples left each
        metric undefined, for the metrics some resample did).
    """
    probs, targets, preds = np.asarray(probs, np.float64), np.asarray(targets), np.asarray(preds)
    chunks = [resampled_metrics(w, probs, targets, preds) for w in resample_weights(patients, spec)]
    values = _stacked(chunks)
    undefined = {name: int((~np.isfinite(v)).sum()) for name, v in values.items()}
    return (
        {name: percentile_interval(v, spec.level) for name, v in values.items()},
        {name: count for name, count in undefined.items() if count},
    )


#: The figures ``drgrade report`` compares between models.
PAIRED_METRICS = ("accuracy", "qwk", "auroc_macro")


def paired_differences(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    patients: Sequence[str],
    spec: BootstrapSpec,
) -> dict[str, dict[str, float | list[float] | None]]:
    """First minus second, with the interval from the *same* resamples applied to both models.

    Args:
        first: (probs [N, K], preds [N]) of one model.
        second: (probs, preds) of the other, on the same images in the same order.
        targets: true grades [N].
        patients: each image's patient id.
        spec: resamples, seed and level.
    """
    targets = np.asarray(targets)
    ones = np.ones((1, len(targets)))

    def metrics(weights: np.ndarray, model: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
        values = resampled_metrics(weights, np.asarray(model[0], np.float64), targets, np.asarray(model[1]))
        return {name: values[name] for name in PAIRED_METRICS}

    point_a, point_b = metrics(ones, first), metrics(ones, second)
    chunks = []
    for weights in resample_weights(patients, spec):
        a, b = metrics(weights, first), metrics(weights, second)
        chunks.append({name: a[name] - b[name] for name in PAIRED_METRICS})
    deltas = _stacked(chunks)
    return {
        name: {
            "difference": float(point_a[name][0] - point_b[name][0]),
            "interval": percentile_interval(deltas[name], spec.level),
        }
        for name in PAIRED_METRICS
    }
