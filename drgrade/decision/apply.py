"""The one place where the fitted temperature, thresholds and cuts are applied to logits.

Every path that decides (evaluation, ``predict``, ``explain``, the web page, the exported ONNX
graph, which is traced from ``DecisionRule.forward``) goes through these functions, so the
probabilities, the grade and the flags of an image are the same everywhere.
"""

from __future__ import annotations

import torch

from drgrade.decision.outputs import RuleOutput
from drgrade.grades import REFERABLE_FROM, REFERRAL_LEVELS, referral_score


def calibrated_probabilities(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """softmax(logits / temperature) in float32 (logits may come from bf16 autocast)."""
    return (logits.float() / temperature).softmax(dim=1)


def decide(probabilities: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """argmax_k p_k / t_k: always defined, plain argmax when the thresholds are equal."""
    return (probabilities / thresholds.to(probabilities)).argmax(dim=1)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Predictive entropy in nats per row, in float64 (0 for a one-hot row)."""
    p = probabilities.double().clamp(1e-12, 1.0)
    return -(p * p.log()).sum(dim=1)


def operating_flags(probabilities: torch.Tensor, levels: tuple[str, ...], cuts: torch.Tensor) -> torch.Tensor:
    """[B, P] flags of each operating point: its level's score >= its cut (an undefined cut flags none)."""
    scores = torch.stack([referral_score(probabilities, REFERRAL_LEVELS[level]) for level in levels], dim=1)
    cuts = cuts.to(scores)
    return (scores >= cuts) & torch.isfinite(cuts)


def apply_rule(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    thresholds: torch.Tensor,
    referable_cut: torch.Tensor,
    uncertainty_cut: torch.Tensor,
) -> RuleOutput:
    """Probabilities, grade and flags of a batch of logits [B, K] under a fitted rule.

    Without a referable cut (validation had no referable eye to fit it on) ``referable_by_score``
    falls back to the grade, so no image is ever marked "not referable" without grounds.
    """
    probabilities = calibrated_probabilities(logits, temperature)
    grade = decide(probabilities, thresholds)
    p_referable = referral_score(probabilities, REFERABLE_FROM)
    by_grade = grade >= REFERABLE_FROM
    defined = torch.isfinite(referable_cut)  # (written without Where: onnxruntime has none for booleans)
    by_score = (defined & (p_referable >= referable_cut)) | (~defined & by_grade)
    uncertainty = entropy(probabilities)
    return RuleOutput(
        probabilities,
        grade,
        p_referable,
        by_grade,
        by_score,
        uncertainty,
        uncertainty > uncertainty_cut.double(),
    )
