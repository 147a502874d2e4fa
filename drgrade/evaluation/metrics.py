"""Split-level metrics from probabilities, with torchmetrics' functional API.

Everything is computed once over the whole split (never averaged per batch). An undefined
figure is reported as undefined (None in metrics.json, ``-`` in reports), never as a number:
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

import warnings
from dataclasses import dataclass, field

import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multiclass_roc,
)

from drgrade.evaluation.kappa import qwk
from drgrade.grades import GRADES, NUM_GRADES, REFERABLE_FROM, VISION_THREATENING_FROM


@dataclass
class Evaluation:
    """Everything one split's evaluation produced, for logging, files and the report."""

    metrics: dict[str, float | list | None]
    confusion: torch.Tensor
    roc: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)


def error_margins(preds: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Fractions of predictions exactly right, off by one grade, off by two or more (Table 4)."""
    gap = (preds - targets).abs()
    n = max(len(gap), 1)
    return {
        "exact": float((gap == 0).sum()) / n,
        "off_by_one": float((gap == 1).sum()) / n,
        "off_by_two_plus": float((gap >= 2).sum()) / n,
    }


def _present(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    seen = torch.zeros(NUM_GRADES, dtype=torch.bool)
    seen[targets.unique()] = True
    seen[preds.unique()] = True
    return seen


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor) -> Evaluation:
    """All Table 3 / Table 4 metrics plus QWK and the referable / vision-threatening DR figures.

    Referable sensitivity / specificity are of the decided grades (grade >= moderate); the
    referral AUROCs rank images by P(grade >= moderate) and P(grade >= severe).

    ``preds`` are the decided grades (argmax, or the calibrated rule); ``probs`` feed AUROC/ROC.
    """
    probs, targets, preds = probs.float().cpu(), targets.long().cpu(), preds.long().cpu()
    k = NUM_GRADES
    precision = multiclass_precision(preds, targets, k, average=None, zero_division=0)
    recall = multiclass_recall(preds, targets, k, average=None, zero_division=0)
    f1 = multiclass_f1_score(preds, targets, k, average=None, zero_division=0)
    present = _present(preds, targets)
    decided = torch.bincount(preds, minlength=k) > 0
    true = torch.bincount(targets, minlength=k) > 0

    with warnings.catch_warnings():  # a class absent from (or alone in) the targets: AUROC None below
        warnings.filterwarnings("ignore", message="No (positive|negative) samples in targets")
        fprs, tprs, _ = multiclass_roc(probs, targets, k)
    aurocs: list[float | None] = []
    roc: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    for grade in range(k):
        positive = (targets == grade).long()
        aurocs.append(_auroc(probs[:, grade], positive.bool()))
        roc.append(None if aurocs[-1] is None else (fprs[grade], tprs[grade]))
    defined = [a for a in aurocs if a is not None]

    referable_true = targets >= REFERABLE_FROM
    vision_threatening = targets >= VISION_THREATENING_FROM
    referable_pred = preds >= REFERABLE_FROM
    metrics: dict[str, float | list | None] = {
        "accuracy": float(multiclass_accuracy(preds, targets, k, average="micro")),
        "macro_precision": _defined_mean(precision, decided),
        "macro_precision_grades": int(decided.sum()),
        "macro_recall": _defined_mean(recall, true),
        "macro_recall_grades": int(true.sum()),
        "macro_f1": float(f1[present].mean()),
        "auroc_macro": sum(defined) / len(defined) if defined else None,
        "qwk": qwk(targets.numpy(), preds.numpy(), k),
        "referable_sensitivity": _ratio(referable_pred & referable_true, referable_true),
        "referable_specificity": _ratio(~referable_pred & ~referable_true, ~referable_true),
        "referable_auroc": _auroc(probs.double()[:, REFERABLE_FROM:].sum(1), referable_true),
        "vtdr_auroc": _auroc(probs.double()[:, VISION_THREATENING_FROM:].sum(1), vision_threatening),
        "num_images": len(targets),
        **error_margins(preds, targets),
    }
    metrics |= _per_grade(precision, recall, f1, aurocs, preds, targets)
    confusion = multiclass_confusion_matrix(preds, targets, k)
    return Evaluation(metrics, confusion, roc)


def _per_grade(precision, recall, f1, aurocs: list, preds: torch.Tensor, targets: torch.Tensor) -> dict:
    """Per-grade precision, recall, F1 and AUROC; None where undefined (see the module docstring)."""
    decided = torch.bincount(preds, minlength=NUM_GRADES)
    true = torch.bincount(targets, minlength=NUM_GRADES)
    out: dict[str, float | None] = {}
    for grade in GRADES:
        i = grade.index
        out[f"precision_{grade.short}"] = float(precision[i]) if decided[i] else None
        out[f"recall_{grade.short}"] = float(recall[i]) if true[i] else None
        out[f"f1_{grade.short}"] = float(f1[i]) if decided[i] or true[i] else None
        out[f"auroc_{grade.short}"] = aurocs[i]
    return out


def _defined_mean(values: torch.Tensor, defined: torch.Tensor) -> float | None:
    """The mean of the defined per-grade values (None when none is)."""
    return float(values[defined].mean()) if defined.any() else None


def _auroc(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    """Binary AUROC, None unless both classes occur."""
    if positive.all() or not positive.any():
        return None
    return float(binary_auroc(scores, positive.long()))


def _ratio(hits: torch.Tensor, population: torch.Tensor) -> float | None:
    total = int(population.sum())
    return float(hits.sum()) / total if total else None


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
