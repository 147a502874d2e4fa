"""Split-level metrics: the weighted-count definitions of ``bootstrap.py`` with every weight 1.

Every figure has one definition, the weighted-count function that also computes its bootstrap
intervals (``bootstrap.resampled_metrics``); the point estimate is that function on one row of
ones, so an interval and its point can never disagree on what they measure. torchmetrics draws
the ROC curves. Everything is computed once over the whole split (never averaged per batch). An
undefined figure is reported as undefined (None in metrics.json, ``-`` in reports), never as a
number:
- per-class precision of a grade never decided, recall of a grade absent from the split, and F1
  of a grade in neither, are None (a "0.000" there would read as a measured failure);
- macro precision averages the grades with a defined precision (decided at least once) and
  macro recall those with a defined recall (present in the split), each saying how many
  (``macro_precision_grades``, ``macro_recall_grades``): an undefined grade is left out, never
  counted as a 0 (scikit-learn's ``zero_division=0`` would read 0.545 over 5 grades as 0.109);
  macro F1 averages the grades present in targets *or* decisions (each has a defined F1);
- AUROC of a grade absent from the targets is None and left out of the macro AUROC.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_roc

from drgrade.evaluation.bootstrap import macro_grades, resampled_metrics
from drgrade.evaluation.kappa import weighted_confusion
from drgrade.grades import GRADES, NUM_GRADES

GRADE_SHORTS = [grade.short for grade in GRADES]


@dataclass
class Evaluation:
    """Everything one split's evaluation produced, for logging, files and the report."""

    metrics: dict[str, float | list | None]
    confusion: torch.Tensor
    roc: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor) -> Evaluation:
    """All Table 3 / Table 4 metrics plus QWK and the referable / vision-threatening DR figures.

    Referable sensitivity / specificity are of the decided grades (grade >= moderate); the
    referral AUROCs rank images by P(grade >= moderate) and P(grade >= severe).

    Args:
        probs: probabilities [N, K] (AUROC and the ROC curves).
        targets: true grades [N].
        preds: the decided grades (argmax, or the calibrated rule) [N].
    """
    probs, targets, preds = probs.float().cpu(), targets.long().cpu(), preds.long().cpu()
    ones = np.ones((1, len(targets)))
    values = resampled_metrics(ones, probs.double().numpy(), targets.numpy(), preds.numpy())
    metrics: dict[str, float | list | None] = {name: _defined(v[0]) for name, v in values.items()}
    covered = macro_grades(targets.numpy(), preds.numpy())
    metrics["macro_precision_grades"] = int(covered["precision"].sum())
    metrics["macro_recall_grades"] = int(covered["recall"].sum())
    metrics["num_images"] = len(targets)
    with warnings.catch_warnings():  # a class absent from (or alone in) the targets: no curve below
        warnings.filterwarnings("ignore", message="No (positive|negative) samples in targets")
        fprs, tprs, _ = multiclass_roc(probs, targets, NUM_GRADES)
    curves = [
        (fprs[k], tprs[k]) if metrics[f"auroc_{short}"] is not None else None
        for k, short in enumerate(GRADE_SHORTS)
    ]
    confusion = torch.from_numpy(weighted_confusion(ones, targets.numpy(), preds.numpy())[0]).long()
    return Evaluation(metrics, confusion, curves)


def _defined(value: float) -> float | None:
    """A figure as results hold it: None where undefined (NaN in the weighted-count functions)."""
    return None if math.isnan(value) else float(value)


@dataclass
class SplitResult:
    """One split's logits, the decision rule's outputs on them, and their evaluation.

    ``evaluation`` uses the rule's grades (thresholded when the rule has thresholds);
    ``argmax_evaluation`` is the plain-argmax result, kept only when the two rules differ.
    """

    stage: str
    logits: torch.Tensor
    #: The rule's outputs (``drgrade.decision.apply.RuleOutput``), one row per image.
    outputs: tuple
    #: [N, P] which images each operating point of the rule refers.
    operating_flags: torch.Tensor
    targets: torch.Tensor
    index: torch.Tensor
    groups: torch.Tensor
    evaluation: Evaluation
    argmax_evaluation: Evaluation | None = None
    thresholds: list[float] | None = None
    extras: dict = field(default_factory=dict)
    #: [N] P(DME) of a model with a DME output (None: it has none).
    p_dme: torch.Tensor | None = None

    @property
    def probs(self) -> torch.Tensor:
        """The rule's (temperature-scaled) probabilities [N, K]."""
        return self.outputs.probabilities

    @property
    def preds(self) -> torch.Tensor:
        """The rule's grades [N]."""
        return self.outputs.grade

    @property
    def uncertainty(self) -> torch.Tensor:
        """The rule's predictive entropy per image [N]."""
        return self.outputs.uncertainty


def lesion_mass_fraction(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's total mass inside the lesion mask (the "pointing game" score).

    1 when all attention is on lesions, the mask's area fraction for a uniform map.
    """
    maps, masks = maps.float().flatten(1), (masks > 0).float().flatten(1)
    return (maps * masks).sum(1) / maps.sum(1).clamp_min(1e-12)
