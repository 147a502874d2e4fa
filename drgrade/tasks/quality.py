"""The learned gradability option: a ``quality`` model (Good / Usable / Reject, as EyeQ labels EyePACS).

The rule gate's thresholds stand for what a grader would send back; where a user has human
gradability labels (EyeQ's three levels, Messidor-2's ``adjudicated_gradable``, DDR's grade 5),
a model can learn it instead:

    drgrade fit --config configs/quality.yaml --data.roots.eyeq data/eyeq

It is the CLIP image tower with a linear head over the three levels, trained on the labels the
datamodule gives with ``data.target: gradability``. A two-level label (gradable / reject) says
only that a photograph is good *or* usable, so its loss is the negative log of that sum
(``GradabilityLoss``): both kinds of label train one model. Validation reports the reject
class's sensitivity and specificity and selects checkpoints by Cohen's kappa of reject vs not
(logged as ``val/selection_qwk``, what the shared trainer config monitors). Given to the gate
(``--data.quality_model``), an unlabelled photograph it calls "reject" is not graded.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from drgrade.data.augment import EvalTransform
from drgrade.data.preprocess import resize_square
from drgrade.decision.gradability import LEVELS, REJECT, learned_verdict
from drgrade.errors import OptionError
from drgrade.evaluation.clinical import sensitivity_specificity
from drgrade.evaluation.kappa import qwk
from drgrade.tasks.base import TrainableTask


class GradabilityLoss(nn.Module):
    """Cross-entropy over good / usable / reject; a ``gradable`` label (3) counts as good or usable."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean of -log P(the label's allowed levels)."""
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        exact = labels < len(LEVELS)
        allowed[exact, labels[exact]] = True
        allowed[~exact, :REJECT] = True
        log_probs = logits.float().log_softmax(-1).masked_fill(~allowed, float("-inf"))
        return -log_probs.logsumexp(-1).mean()


class QualityTask(TrainableTask):
    """Gradability: the image tower and a linear head over Good / Usable / Reject.

    Args:
        backbone: ``RN50``, ``ViT-B-16``, ``flair``, ... (``drgrade.models.backbones``).
        pretrained: the backbone's weights: a tag (``openai``), a file, or None (random).
        image_size: input size (linked from ``data.image_size``).
        finetune_image: see ``TrainableTask``.
        image_lr: see ``TrainableTask``.
        lr: see ``TrainableTask``.
        weight_decay: see ``TrainableTask``.
        text_encoder: ``flair`` only: its text model's folder.
        **kwargs: the remaining options of ``TrainableTask`` and ``BaseTask``.
    """

    run_name = "quality"
    display_name = "Quality"

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int = 224,
        finetune_image: bool = False,
        image_lr: float = 1e-5,
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        text_encoder: str | dict | None = None,
        **kwargs,
    ):
        super().__init__(lr, weight_decay, finetune_image, image_lr, **kwargs)

    def configure_models(self) -> None:
        """The backbone and the three-level head on the pooled embedding, unnormalised.

        Not L2-normalised as for CLIP's cosine logits: an embedding's length carries exposure,
        which is much of what makes a photograph ungradable.
        """
        self.backbone = self.build_backbone()
        self.head = nn.Linear(self.backbone.embed_dim, len(LEVELS))

    def configure_losses(self) -> None:
        """``GradabilityLoss``."""
        self.criterion = GradabilityLoss()

    def setup(self, stage: str) -> None:
        """Refuse data that does not carry gradability labels."""
        datamodule = self.trainer.datamodule
        if datamodule is not None and datamodule.hparams.get("target") != "gradability":
            raise OptionError("the quality model learns gradability labels: set data.target: gradability")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, 3] over good / usable / reject."""
        with nullcontext() if self.hparams.finetune_image else torch.no_grad():
            embedding = self.backbone.encode_image(images, normalize=False)
        return self.head(embedding.float())

    def evaluation_step(self, batch: dict, stage: str) -> None:
        """Store the batch's logits; log its loss."""
        logits = self(batch["image"])
        self.log(f"{stage}/loss", self.criterion(logits, batch["label"]), batch_size=len(logits))
        self.store.update(logits, batch["label"], batch["index"], batch["group"])

    def evaluate(self, stage, logits, targets, index, groups) -> None:
        """Log reject sensitivity, specificity, level accuracy and the selection kappa."""
        scores = gradability_scores(logits, targets)
        values = {f"{stage}/{name}": value for name, value in scores.items()}
        if stage == "val":
            values["val/selection_qwk"] = scores["reject_kappa"]
        self.log_dict({k: float("nan") if v is None else float(v) for k, v in values.items()}, sync_dist=True)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """A quality model grades no retinopathy: it serves the gate (``data.quality_model``)."""
        raise OptionError(
            "a quality model grades no DR: pass its checkpoint to the gate as --data.quality_model"
        )


def gradability_scores(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """Reject sensitivity / specificity and kappa (every label), level accuracy (three-level labels)."""
    predicted = logits.argmax(-1).numpy()
    targets = targets.numpy()
    rejected = targets == REJECT
    flagged = predicted == REJECT
    rates = sensitivity_specificity(flagged, rejected)
    exact = targets < len(LEVELS)
    return {
        "reject_sensitivity": rates["sensitivity"],
        "reject_specificity": rates["specificity"],
        "reject_kappa": qwk(targets=rejected.astype(int), preds=flagged.astype(int), undefined=0.0),
        "level_accuracy": float((predicted[exact] == targets[exact]).mean()) if exact.any() else None,
    }


class QualityModel:
    """A trained quality checkpoint as the gate's learned verdict on network-size crops.

    Args:
        checkpoint: a ``quality`` task checkpoint.
    """

    def __init__(self, checkpoint: str | Path):
        from drgrade.tasks.loading import load_task  # loading imports every task module

        task = load_task(checkpoint)
        if not isinstance(task, QualityTask):
            raise OptionError(
                f"{checkpoint} is a {type(task).__name__}, not a quality model (configs/quality.yaml)"
            )
        self.task = task.eval()
        self.name = Path(checkpoint).name
        self.transform = EvalTransform(task.normalisation())

    def probabilities(self, crop: np.ndarray) -> np.ndarray:
        """P(good), P(usable), P(reject) of a fundus crop (HxWx3 uint8, resized to the model's input)."""
        crop = resize_square(crop, self.task.hparams.image_size)
        with torch.no_grad():
            return self.task(self.transform(crop, 0)[None]).softmax(-1)[0].numpy()

    def verdict(self, crop: np.ndarray) -> str:
        """Why the model refuses a fundus crop, or "" when reject is not its most likely level."""
        return learned_verdict(self.probabilities(crop), self.name)
