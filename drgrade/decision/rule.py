"""``DecisionRule``: everything fitted on validation that turns logits into a decision.

After anomalib's ``PostProcessor``: a small ``nn.Module`` each task holds as ``task.rule``. Its
buffers travel in the checkpoint and it is traced into the exported ONNX graph, so training-time
evaluation, ``predict``, ``explain``, the web page and the torch-free runner decide identically.

- ``fit(logits, targets, groups)`` fits, on the validation split's *logits*: the temperature
  (NLL), the per-class thresholds (``threshold_objective``; ``auto`` picks by cross-fitted QWK,
  halving by patient), the referral operating cuts and the uncertainty cut;
- ``forward(logits)`` applies them (``drgrade.decision.apply``): probabilities, grade, referral
  score and flags, uncertainty.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from drgrade.decision.apply import apply_rule, entropy, operating_flags
from drgrade.decision.checks import rule_problems
from drgrade.decision.fitting import (
    OPERATING_POINTS,
    fit_operating_points,
    fit_temperature,
    uncertainty_cutoff,
)
from drgrade.decision.outputs import OUTPUT_NAMES, RuleOutput
from drgrade.decision.thresholds import calibrate_thresholds, choose_objective, crossfit_decisions
from drgrade.errors import CheckpointError, OptionError
from drgrade.grades import NUM_GRADES

ThresholdObjective = Literal["none", "youden", "f1", "qwk", "auto"]
#: The operating point whose cut drives ``referable_by_score``.
REFERABLE_POINT = OPERATING_POINTS.index(("referable", "sensitivity"))


def check_rule_options(target_sensitivity: float, target_specificity: float, refer_fraction: float) -> None:
    """Refuse operating-point targets or a referral fraction outside their range."""
    for name, value in (
        ("target_sensitivity", target_sensitivity),
        ("target_specificity", target_specificity),
    ):
        if not 0 < value <= 1:
            raise OptionError(f"model.init_args.{name} must be in (0, 1], got {value}")
    if not 0 <= refer_fraction < 1:
        raise OptionError(f"model.init_args.refer_fraction must be in [0, 1), got {refer_fraction}")


class DecisionRule(nn.Module):
    """Temperature, per-class thresholds, referral operating cuts and the uncertainty cut.

    Args:
        objective: the per-class thresholds' objective: ``none`` (argmax), ``youden`` / ``f1``
            (one class at a time), ``qwk`` (coordinate search), or ``auto`` (the objective with
            the best cross-fitted validation QWK when its gain over argmax is beyond noise, else
            argmax; see ``thresholds.choose_objective``).
        target_sensitivity: the sensitivity the high-sensitivity operating cuts reach on validation.
        target_specificity: the specificity the high-specificity operating cuts keep on validation.
        refer_fraction: the share of validation images whose entropy marks them for a human grader.
    """

    def __init__(
        self,
        objective: ThresholdObjective = "none",
        target_sensitivity: float = 0.9,
        target_specificity: float = 0.95,
        refer_fraction: float = 0.1,
    ):
        check_rule_options(target_sensitivity, target_specificity, refer_fraction)
        super().__init__()
        self.objective = objective
        self.targets = {"sensitivity": target_sensitivity, "specificity": target_specificity}
        self.refer_fraction = refer_fraction
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("thresholds", torch.full((NUM_GRADES,), 1.0 / NUM_GRADES))
        self.register_buffer("thresholded", torch.tensor(False))
        self.register_buffer("operating_cuts", torch.full((len(OPERATING_POINTS),), float("nan")))
        self.register_buffer("uncertainty_cutoff", torch.tensor(float("inf")))
        #: ``auto``'s choice and every objective's cross-fitted validation QWK (None before fitting).
        self.choice: dict | None = None

    def forward(self, logits: torch.Tensor) -> RuleOutput:
        """The decision for a batch of logits [B, K] (see ``RuleOutput``)."""
        if logits.dim() != 2 or logits.shape[1] != NUM_GRADES:
            raise ValueError(f"a decision needs logits [batch, {NUM_GRADES}], got {list(logits.shape)}")
        referable_cut = self.operating_cuts[REFERABLE_POINT]
        return apply_rule(logits, self.temperature, self.thresholds, referable_cut, self.uncertainty_cutoff)

    def operating_flags(self, probabilities: torch.Tensor) -> torch.Tensor:
        """[N, len(OPERATING_POINTS)]: which images each operating point refers."""
        return operating_flags(
            probabilities, tuple(level for level, _ in OPERATING_POINTS), self.operating_cuts
        )

    # -- fitting on validation ----------------------------------------------------------------
    @torch.no_grad()
    def fit(self, logits: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> RuleOutput:
        """Fit every part on the validation split; returns the fitted rule's decisions on it.

        Args:
            logits: the validation split's logits [N, K] (never probabilities).
            targets: its grades [N].
            groups: each image's patient (group) code [N], so cross-fitting keeps fellow eyes together.
        """
        logits, targets, groups = logits.detach().cpu().float(), targets.cpu().long(), groups.cpu().long()
        self.temperature.fill_(fit_temperature(logits.double().numpy(), targets.numpy()))
        probabilities = self(logits).probabilities
        method = self.objective
        if method == "auto":
            method, record = choose_objective(probabilities, targets, groups)
            self.choice = {"objective": method, **record}
        self.thresholds.copy_(calibrate_thresholds(probabilities, targets, method, groups))
        self.thresholded.fill_(method != "none")
        numpy_probs = probabilities.numpy()  # float32, as the rule sums and compares them when it decides
        cuts = fit_operating_points(
            numpy_probs, targets.numpy(), **{f"target_{k}": v for k, v in self.targets.items()}
        )
        self.operating_cuts.copy_(torch.tensor(cuts))
        self.uncertainty_cutoff.fill_(
            uncertainty_cutoff(entropy(probabilities).double().numpy(), self.refer_fraction)
        )
        return self(logits)

    def selection_grades(
        self, probabilities: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        """Validation grades no image of which was decided by thresholds fitted to it (or its fellow eye).

        What checkpoints are selected by: cross-fitted decisions for a thresholding objective,
        plain argmax otherwise.
        """
        if self.objective == "none":
            return probabilities.argmax(dim=1)
        return crossfit_decisions(probabilities.cpu(), targets.cpu(), self.objective, groups.cpu())

    # -- checking and describing --------------------------------------------------------------
    def check(self, where: str) -> None:
        """Raise ``CheckpointError`` naming ``where`` when the loaded rule cannot decide sanely."""
        problems = rule_problems(
            float(self.temperature),
            self.thresholds.tolist(),
            self.operating_cuts.tolist(),
            float(self.uncertainty_cutoff),
        )
        if problems:
            raise CheckpointError(f"{where}: its decision rule is broken ({'; '.join(problems)}); refit it")

    def describe(self) -> dict:
        """The fitted rule as plain JSON values (metrics.json, the ONNX metadata)."""
        cut = float(self.uncertainty_cutoff)
        return {
            "temperature": float(self.temperature),
            "thresholded": bool(self.thresholded),
            "thresholds": self.thresholds.tolist(),
            "objective": self.objective,
            "choice": self.choice,
            "operating_points": [
                {
                    "level": level,
                    "target": kind,
                    "goal": self.targets[kind],
                    "cut": None if math.isnan(c) else c,
                }
                for (level, kind), c in zip(OPERATING_POINTS, self.operating_cuts.tolist(), strict=True)
            ],
            "uncertainty_cutoff": cut if math.isfinite(cut) else None,
            "outputs": list(OUTPUT_NAMES),
        }
