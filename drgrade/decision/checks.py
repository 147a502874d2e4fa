"""Is a decision rule sane, and is a model's output one it could have decided? Torch-free.

A broken model must not grade: NaN probabilities argmax to grade 0, "No DR"; a temperature of 0
or NaN, NaN thresholds or cuts turn every image into "No DR, not referable". So a rule is checked
when it is loaded (from a checkpoint or an ONNX file: the file is refused) and every image's
output is checked before it is written (the image gets an ``error`` and no grade). The checkpoint
path (``DecisionRule``) and the torch-free ONNX runner use these same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from drgrade.grades import NUM_GRADES

#: How far a row of probabilities may sum from 1.
SUM_TOLERANCE = 1e-3


def rule_problems(
    temperature: float, thresholds: Sequence[float], cuts: Sequence[float], uncertainty_cutoff: float
) -> list[str]:
    """Why a fitted rule cannot be used (empty when it can).

    Args:
        temperature: the calibration temperature (finite, > 0).
        thresholds: one per grade (finite, > 0).
        cuts: the operating cuts (each in [0, 1], or NaN where validation could not define it).
        uncertainty_cutoff: the entropy cut (>= 0, infinity for "never").
    """
    problems = []
    if not (math.isfinite(temperature) and temperature > 0):
        problems.append(f"temperature {temperature} is not a finite positive number")
    if len(thresholds) != NUM_GRADES or not all(math.isfinite(t) and t > 0 for t in thresholds):
        problems.append(f"thresholds {list(thresholds)} are not {NUM_GRADES} finite positive numbers")
    if any(not math.isnan(c) and not 0 <= c <= 1 for c in cuts):
        problems.append(f"operating cuts {list(cuts)} are not within [0, 1]")
    if math.isnan(uncertainty_cutoff) or uncertainty_cutoff < 0:
        problems.append(f"uncertainty cut {uncertainty_cutoff} is not >= 0")
    return problems


def expected_grade(probabilities: Sequence[float], thresholds: Sequence[float]) -> int:
    """The grade the rule decides for these probabilities (first maximum of p_k / t_k)."""
    scaled = [p / t for p, t in zip(probabilities, thresholds, strict=True)]
    return scaled.index(max(scaled))


def output_problem(probabilities: Sequence[float], grade: int, thresholds: Sequence[float]) -> str | None:
    """Why one image's model output cannot be reported as a grade, or None when it can.

    Args:
        probabilities: the output row (one per grade).
        grade: the decided grade.
        thresholds: the rule's thresholds, to check the grade against.
    """
    if len(probabilities) != NUM_GRADES:
        return f"the model gave {len(probabilities)} probabilities, not {NUM_GRADES}"
    if not all(math.isfinite(p) for p in probabilities):
        return "the model's probabilities are not finite (NaN or infinity)"
    if min(probabilities) < 0 or abs(sum(probabilities) - 1) > SUM_TOLERANCE:
        return f"the model's probabilities are not a distribution (sum {sum(probabilities):.4g})"
    expected = expected_grade(probabilities, thresholds)
    if grade != expected:
        return f"the model's grade {grade} is not its decision rule's ({expected})"
    return None
