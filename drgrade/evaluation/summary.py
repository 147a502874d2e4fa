"""The sections of metrics.json beyond the point metrics.

Intervals, operating points, calibration, uncertainty referral, per-source and per-patient results.

One function, ``clinical_sections``, so ``EvaluationWriter`` (and anything re-evaluating saved
predictions) builds them identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import softmax

from drgrade.evaluation.bootstrap import BootstrapSpec, confidence_intervals, resampling_units, unit_phrase
from drgrade.evaluation.clinical import (
    ECE_BINS,
    apply_operating_points,
    classwise_calibration_error,
    expected_calibration_error,
    per_patient_operating_points,
    referral_curves,
)
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.proportions import proportion_intervals
from drgrade.grades import NUM_GRADES


def interval_sections(probs, targets, preds, patients, spec: BootstrapSpec) -> dict:
    """``confidence_intervals``, ``interval_methods`` and ``undefined_resamples`` entries.

    Proportions get Wilson intervals of their counts (``drgrade.evaluation.proportions``), the
    other figures patient-level bootstrap intervals (none without a bootstrap).
    """
    if len(targets) == 0:
        return {"confidence_intervals": {}}
    confusion = np.zeros((NUM_GRADES, NUM_GRADES), dtype=np.int64)
    np.add.at(confusion, (np.asarray(targets), np.asarray(preds)), 1)
    wilson = proportion_intervals(confusion, spec.level)
    intervals, undefined = (
        confidence_intervals(probs, targets, preds, patients, spec) if spec.resamples else ({}, {})
    )
    return {
        "confidence_intervals": intervals | wilson,
        "interval_methods": {
            "wilson": sorted(wilson),
            "bootstrap": sorted(set(intervals) - set(wilson)),
        },
        "undefined_resamples": {k: v for k, v in undefined.items() if k not in wilson},
    }


def per_source(
    result: SplitResult, patients: Sequence[str], sources: Sequence[str], spec: BootstrapSpec
) -> dict:
    """Every metric and its interval on each data source's images alone."""
    sources = np.asarray(sources)
    out = {}
    for source in sorted(set(sources.tolist())):
        picked = np.flatnonzero(sources == source)
        probs, targets, preds = result.probs[picked], result.targets[picked], result.preds[picked]
        out[source] = {
            "metrics": compute_metrics(probs, targets, preds).metrics,
            **interval_sections(
                probs.double().numpy(), targets.numpy(), preds.numpy(), [patients[i] for i in picked], spec
            ),
        }
    return out


#: What "before temperature scaling" is for a model whose probabilities are the softmax of its logits.
PLAIN_BEFORE = "softmax of the logits, no temperature"


def calibration_section(result: SplitResult, temperature: float, before: str = "") -> dict:
    """ECE before and after the validation temperature, top-label and classwise.

    Args:
        result: the split's logits and the rule's decisions.
        temperature: the rule's temperature.
        before: what the probabilities before it already are (an ensemble's: after each member's
            own temperature); empty for the softmax of the model's logits.
    """
    targets = result.targets.numpy()
    uncalibrated = softmax(result.logits.double().numpy(), axis=1).astype(np.float32).astype(np.float64)
    after = result.probs.double().numpy()
    return {
        "bins": ECE_BINS,
        "temperature": temperature,
        "before": before or PLAIN_BEFORE,
        "measures": "top-label: the max probability against the argmax's accuracy; classwise: each "
        "grade's probability against that grade's truth (the calibration a thresholded rule uses)",
        "ece_before": expected_calibration_error(uncalibrated, targets),
        "ece_after": expected_calibration_error(after, targets),
        "classwise_ece_before": classwise_calibration_error(uncalibrated, targets),
        "classwise_ece_after": classwise_calibration_error(after, targets),
    }


def clinical_sections(
    result: SplitResult,
    patients: Sequence[str],
    sources: Sequence[str],
    rule: dict,
    spec: BootstrapSpec,
    names_patients: Mapping[str, bool],
    before_temperature: str = "",
) -> dict:
    """The clinical entries of one split's metrics.json.

    Args:
        result: the split's logits, the rule's decisions and their evaluation.
        patients: each evaluated image's patient id, in ``result`` order.
        sources: each evaluated image's data source, in ``result`` order.
        rule: the fitted decision rule (``DecisionRule.describe()``).
        spec: the bootstrap to draw.
        names_patients: whether each source names patients (``drgrade.data.sources.NAMES_PATIENTS``).
        before_temperature: what the model's probabilities already are before its own temperature.
    """
    probs = result.probs.double().numpy()
    targets, preds = result.targets.numpy(), result.preds.numpy()
    flags = result.operating_flags.numpy()
    points = apply_operating_points(flags, targets, rule["operating_points"], probs)
    units = resampling_units(patients, sources, names_patients)
    sections = {
        **interval_sections(probs, targets, preds, patients, spec),
        "bootstrap": spec.describe(units),
        "operating_points": points,
        "calibration_error": calibration_section(result, rule["temperature"], before_temperature),
        "referral": referral_curves(
            probs, targets, preds, result.uncertainty.double().numpy(), rule.get("uncertainty_cutoff")
        ),
        "per_source": per_source(result, patients, sources, spec),
    }
    if result.argmax_evaluation is not None:
        argmax = interval_sections(probs, targets, probs.argmax(1), patients, spec)
        sections["argmax_confidence_intervals"] = argmax["confidence_intervals"]
        sections["argmax_interval_methods"] = argmax.get("interval_methods", {})
        sections["argmax_undefined_resamples"] = argmax.get("undefined_resamples", {})
    if any(u["unit"] == "patient" for u in units.values()):
        sections["per_patient"] = per_patient_operating_points(
            flags, targets, patients, rule["operating_points"]
        ) | {"unit": unit_phrase(units)}
    return sections
