"""The sections of metrics.json beyond the point metrics.

Intervals, operating points, calibration, uncertainty referral, per-source and per-patient results.

One function, ``clinical_sections``, so ``EvaluationWriter`` (and anything re-evaluating saved
predictions) builds them identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drgrade.evaluation.bootstrap import BootstrapSpec, confidence_intervals, resampling_unit
from drgrade.evaluation.clinical import (
    ECE_BINS,
    apply_operating_points,
    expected_calibration_error,
    per_patient_operating_points,
    referral_curves,
)
from drgrade.evaluation.metrics import SplitResult, compute_metrics


@dataclass(frozen=True)
class ValidationSettings:
    """What a task fitted on validation and the targets it fitted them for."""

    temperature: float
    operating_cuts: list[float]
    target_sensitivity: float
    target_specificity: float
    bootstrap: BootstrapSpec


def _intervals(probs, targets, preds, patients, spec: BootstrapSpec) -> dict:
    if spec.resamples == 0 or len(targets) == 0:
        return {}
    return confidence_intervals(probs, targets, preds, patients, spec)


def per_source(
    result: SplitResult, patients: Sequence[str], sources: Sequence[str], spec: BootstrapSpec
) -> dict:
    """Every metric and its interval on each data source's images alone."""
    sources = np.asarray(sources)
    out = {}
    for source in sorted(set(sources.tolist())):
        keep = sources == source
        picked = np.flatnonzero(keep)
        probs, targets, preds = result.probs[picked], result.targets[picked], result.preds[picked]
        out[source] = {
            "metrics": compute_metrics(probs, targets, preds).metrics,
            "confidence_intervals": _intervals(
                probs.double().numpy(), targets.numpy(), preds.numpy(), [patients[i] for i in picked], spec
            ),
        }
    return out


def clinical_sections(
    result: SplitResult, patients: Sequence[str], sources: Sequence[str], settings: ValidationSettings
) -> dict:
    """The clinical entries of one split's metrics.json.

    Args:
        result: the split's probabilities, decisions and evaluation.
        patients: each evaluated image's patient id, in ``result`` order.
        sources: each evaluated image's data source, in ``result`` order.
        settings: the temperature and cuts fitted on validation, and the bootstrap to draw.
    """
    probs = result.probs.double().numpy()
    targets, preds = result.targets.numpy(), result.preds.numpy()
    spec = settings.bootstrap
    targets_by_kind = {"sensitivity": settings.target_sensitivity, "specificity": settings.target_specificity}
    points = apply_operating_points(probs, targets, settings.operating_cuts, targets_by_kind)
    unit = resampling_unit(patients)
    before = result.uncalibrated_probs if result.uncalibrated_probs is not None else result.probs
    sections = {
        "confidence_intervals": _intervals(probs, targets, preds, patients, spec),
        "bootstrap": spec.describe(unit),
        "operating_points": points,
        "calibration_error": {
            "bins": ECE_BINS,
            "temperature": settings.temperature,
            "ece_before": expected_calibration_error(before.double().numpy(), targets),
            "ece_after": expected_calibration_error(probs, targets),
        },
        "referral": referral_curves(probs, targets, preds),
        "per_source": per_source(result, patients, sources, spec),
    }
    if result.argmax_evaluation is not None:
        sections["argmax_confidence_intervals"] = _intervals(probs, targets, probs.argmax(1), patients, spec)
    if unit == "patient":
        names = [point["name"] for point in points]
        sections["per_patient"] = per_patient_operating_points(
            probs, targets, patients, settings.operating_cuts, names
        )
    return sections
