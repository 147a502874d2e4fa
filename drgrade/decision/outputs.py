"""What a decision rule outputs per image, by name: the same for PyTorch and for an exported graph.

Torch-free at run time (torch is only named in annotations), so the ONNX runner checks a graph's
outputs against the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from torch import Tensor


class RuleOutput(NamedTuple):
    """What the rule decides for a batch (one row per image); an exported graph has these outputs."""

    #: [B, K] float32: softmax(logits / temperature).
    probabilities: Tensor
    #: [B] int64: argmax_k p_k / t_k.
    grade: Tensor
    #: [B] float32: P(grade >= moderate).
    p_referable: Tensor
    #: [B] bool: the decided grade is moderate or worse.
    referable_by_grade: Tensor
    #: [B] bool: p_referable >= the validation operating-point cut (the grade without such a cut).
    referable_by_score: Tensor
    #: [B] float64: predictive entropy (nats).
    uncertainty: Tensor
    #: [B] bool: uncertainty > the validation uncertainty cut.
    refer_to_grader: Tensor


#: The exported graph's output names, in ``RuleOutput`` order.
OUTPUT_NAMES = RuleOutput._fields


#: The extra output of an exported graph whose model has a DME output: P(DME) per input [B]
#: (float32, the sigmoid of the task's DME logit); its validation cut is in the metadata (``dme_cut``).
P_DME = "p_dme"
#: The extra output of an exported graph whose model has a fitted typicality check
#: (``drgrade.decision.typicality``): each input's distance from the training photographs.
DISTANCE = "distance"
#: The reason an input beyond the typicality cut is given (PyTorch and the ONNX runner alike).
ATYPICAL = "ungradable: unlike any training photograph (distance {distance:.3g}, cut {cut:.3g})"
