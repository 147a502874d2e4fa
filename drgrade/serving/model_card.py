"""The model card line a screening page opens with, and the cuts its cards compare scores with.

Whoever reads a grade must know what gave it: which model, from which weights, trained how long
on what (synthetic data flagged in capitals), and which checkpoint file (its digest). The line is
read from the same facts as the model card ``drgrade export`` writes (``drgrade.serving.card``,
ONNX metadata ``model_card``), so a page serving the ONNX file says what the page serving its
checkpoint says, from one card. Torch-free: the ONNX path uses it without PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from drgrade.predictions import operating_cut

#: The top probability a graded photograph needs, beside an uncertainty under the validation
#: cut, before the page calls the model "confident" (stated on the page).
CONFIDENT_PROBABILITY = 0.6


@dataclass(frozen=True)
class ModelCard:
    """What a page says about its model, and the decision rule's cuts it shows beside each score.

    Args:
        name: the model's display name.
        backbone: the backbone and the weights it started from.
        training: how long it was trained (or that it was not).
        data: the sources it was fitted on, synthetic ones flagged.
        checkpoint: the checkpoint file and its SHA-256 (shortened).
        rule: the decision rule's description (``DecisionRule.describe()``, or an ONNX file's).
        dme_cut: the validation cut on P(DME) of a model with a DME output (None: none).
    """

    name: str
    backbone: str = "unknown"
    training: str = "unknown"
    data: str = "unknown"
    checkpoint: str = "unknown"
    rule: dict = field(default_factory=dict)
    dme_cut: float | None = None

    def line(self) -> str:
        """One line: model, backbone and weights, training, data, checkpoint."""
        return (
            f"Model: {self.name} | backbone: {self.backbone} | training: {self.training} | "
            f"data: {self.data} | checkpoint: {self.checkpoint}"
        )

    @classmethod
    def from_facts(
        cls, facts: dict | None, rule: dict, fallback_name: str, dme_cut: float | None = None
    ) -> ModelCard:
        """The line's card from an exported model card's facts (``card.card_facts``).

        ``unknown`` for what they lack: a model exported without a card, or before cards named
        their training. ``dme_cut`` is the graph's own (its metadata's, which the runner applies);
        without it, the card's.
        """
        facts = facts if isinstance(facts, dict) else {}
        if dme_cut is None and isinstance(facts.get("dme_cut"), int | float):
            dme_cut = float(facts["dme_cut"])
        try:
            values = {
                "name": str(facts.get("name") or fallback_name)[:300],
                "backbone": backbone_of(facts["weights"], facts.get("members")),
                "training": str(facts["training"])[:300],
                "data": data_words(facts["training_data"]),
                "checkpoint": short_digest(str(facts.get("checkpoint") or "")),
            }
        except (KeyError, TypeError, AttributeError):
            return cls(str(facts.get("name") or fallback_name)[:300], rule=rule, dme_cut=dme_cut)
        return cls(**values, rule=rule, dme_cut=dme_cut)

    # -- the cuts the page shows ----------------------------------------------------------------
    def referable_cut(self) -> tuple[float | None, float | None]:
        """(the cut P(referable) is compared with, the sensitivity it was fitted for), None if undefined."""
        goal = next(
            (p["goal"] for p in self.rule.get("operating_points", []) if p["level"] == "referable"), None
        )
        return operating_cut(self.rule, "referable"), goal

    def uncertainty_cut(self) -> float:
        """The validation uncertainty cut in nats (infinity: none)."""
        cut = self.rule.get("uncertainty_cutoff")
        return math.inf if cut is None else float(cut)

    def confident(self, probabilities, uncertainty: float) -> bool:
        """Uncertainty at most the validation cut AND top probability at least ``CONFIDENT_PROBABILITY``."""
        return uncertainty <= self.uncertainty_cut() and max(probabilities) >= CONFIDENT_PROBABILITY


def short_digest(label: str) -> str:
    """``best.ckpt sha256:0123456789ab`` from a ``checkpoint_label`` (the digest's first 12 digits)."""
    name, _, digest = label.partition(" sha256:")
    return f"{name} sha256:{digest[:12]}" if digest else (label or "unknown")


def backbone_words(weights: dict | None) -> str:
    """``RN50, weights openai`` / ``RN50, random weights (not pretrained)`` from a weights record."""
    if not weights:
        return "none of its own"
    if weights.get("weights") == "random":
        return f"{weights['backbone']}, random weights (not pretrained)"
    digest = f" sha256:{weights['sha256'][:12]}" if weights.get("sha256") else ""
    return f"{weights['backbone']}, weights {weights['weights']}{digest}"


def data_words(data: dict[str, bool] | None) -> str:
    """``aptos2019 (SYNTHETIC), messidor2 (SYNTHETIC)`` from the sources a checkpoint was fitted on."""
    if not data:
        return "not recorded"
    return ", ".join(f"{name} (SYNTHETIC)" if synthetic else name for name, synthetic in data.items())


def backbone_of(weights: dict | None, members: list[dict] | None) -> str:
    """The backbone words of a model, or of each member of an ensemble."""
    if members is not None:
        return "ensemble of " + "; ".join(backbone_words(m) for m in members)
    return backbone_words(weights)


def training_words(task) -> str:
    """How long a loaded task was trained, from its checkpoint (or that a zero-shot model was not)."""
    if not task.trainable:
        return "not trained (zero-shot; only its decision rule fitted on validation)"
    if task.checkpoint_epoch is not None:
        return f"{task.checkpoint_epoch + 1} epoch(s)"
    return "unknown"


def card_of_task(task, origin: str = "") -> ModelCard:
    """The card of a loaded task (its checkpoint's records, as ``card.card_facts`` reads them).

    Args:
        task: the loaded task.
        origin: its checkpoint as result files name it (``checkpoint_label``).
    """
    members = getattr(task, "members", None)
    member_weights = [m.weights_record for m in members] if members is not None else None
    return ModelCard(
        task.display_name,
        backbone_of(task.weights_record, member_weights),
        training_words(task),
        data_words(task.training_data),
        short_digest(origin),
        task.rule.describe(),
        task.dme_cut_value(),
    )
