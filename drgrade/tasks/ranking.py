"""Ranking-aware prompting: learnable prompts, cosine logits / 0.2, CE + ordinal ranking; DME prompts."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch
from torch import nn

from drgrade.decision.rule import ThresholdObjective
from drgrade.errors import OptionError
from drgrade.grades import DME_STATES, GRADES
from drgrade.models.losses import RankingAwareLoss
from drgrade.models.prompt_learner import PromptLearner
from drgrade.tasks.attention import GradCAMAttention, present_minus_absent
from drgrade.tasks.base import TrainableTask


class RankingCLIP(GradCAMAttention, TrainableTask):
    """Ranking-aware prompt learning (paper section 4.3, after CLIP-DR).

    Args:
        backbone: ``RN50``, ``ViT-B-16``, ``flair``, ... (``drgrade.models.backbones``).
        pretrained: the backbone's weights: a tag (``openai``), a file, or None (random).
        image_size: input size (linked from ``data.image_size``).
        n_ctx: learnable context vectors; None takes ``ctx_init``'s token count (8 without it); a
            number that contradicts ``ctx_init`` is an error rather than silently replaced.
        ctx_init: initialise the context from this text's token embeddings, or None for random.
        rank_token: one learnable vector per grade after the shared context (the paper's
            "learnable prompt vectors for each DR grade"; on by default).
        logit_temperature: logits = cosine(image, grade) / logit_temperature (paper: 0.2); not the
            calibration temperature the decision rule fits on validation.
        alpha: loss = alpha * CE + (1 - alpha) * ranking (paper: 0.7).
        margin: the ranking term's hinge margin (in logit units).
        ranking_form: ``margin`` (hinge) or ``logistic``.
        finetune_image: train the image tower at ``image_lr`` (on by default: the paper's image
            encoder is "updated via prompt learning"); false gives the frozen-tower variant.
        image_lr: see ``TrainableTask``.
        lr: see ``TrainableTask``.
        weight_decay: see ``TrainableTask``.
        threshold_objective: per-class thresholds fitted on validation: ``auto`` (default: the
            objective with the best cross-fitted validation QWK, argmax included), ``qwk``
            (coordinate search maximising validation QWK), ``youden`` or ``f1`` (one-vs-rest).
        text_encoder: ``flair`` only: its text model's folder (``drgrade.models.backbones.flair``).
        dme_weight: weight of the DME loss (binary cross-entropy, masked where the source grades
            no DME) beside the grade loss.
        **kwargs: the remaining options of ``TrainableTask`` and ``BaseTask``.

    DME has prompts of its own: learnable context vectors (and rank tokens) around the two DME
    descriptions (``drgrade.grades.DME_STATES``), through the same frozen text tower; P(DME) is
    the softmax over the pair of cosine logits / ``logit_temperature``.
    """

    has_dme = True
    run_name = "ranking"
    display_name = "Ranking"

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int = 224,
        n_ctx: int | None = None,
        ctx_init: str | None = "a fundus photograph of",
        rank_token: bool = True,
        logit_temperature: float = 0.2,
        alpha: float = 0.7,
        margin: float = 0.5,
        ranking_form: Literal["margin", "logistic"] = "margin",
        finetune_image: bool = True,
        image_lr: float = 1e-5,
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        threshold_objective: ThresholdObjective = "auto",
        text_encoder: str | dict | None = None,
        dme_weight: float = 1.0,
        **kwargs,
    ):
        if not dme_weight >= 0:
            raise OptionError(f"model.init_args.dme_weight must be >= 0, got {dme_weight}")
        super().__init__(lr, weight_decay, finetune_image, image_lr, threshold_objective, **kwargs)
        self.dme_weight = dme_weight

    def configure_models(self) -> None:
        """The backbone, the grade prompt learner, the DME prompt learner and the DME cut."""
        hp = self.hparams
        self.backbone = self.build_backbone()
        self.prompts = PromptLearner(
            self.backbone, [g.description for g in GRADES], hp.n_ctx, hp.ctx_init, hp.rank_token
        )
        self.dme_prompts = PromptLearner(
            self.backbone, [s.description for s in DME_STATES], hp.n_ctx, hp.ctx_init, hp.rank_token
        )
        self.register_dme_cut()

    def configure_losses(self) -> None:
        """Alpha * CE + (1 - alpha) * ordinal ranking."""
        hp = self.hparams
        self.criterion = RankingAwareLoss(hp.alpha, hp.margin, hp.ranking_form)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K]: cosine(image, grade prompt) / logit_temperature."""
        with nullcontext() if self.hparams.finetune_image else torch.no_grad():
            image = self.backbone.encode_image(images, normalize=True)
        return self.embedding_logits(image)

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled embedding; a frozen image tower runs without building a graph."""
        with nullcontext() if self.hparams.finetune_image else torch.no_grad():
            return super().embedding(images)

    def embedding_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits from L2-normalised image embeddings (also the Grad-CAM head)."""
        text = self.prompts(self.backbone)
        return image.float() @ text.float().T / self.hparams.logit_temperature

    def embedding_dme_logits(self, image: torch.Tensor) -> torch.Tensor:
        """DME logits [B] from L2-normalised image embeddings and the learnt DME prompts."""
        text = self.dme_prompts(self.backbone)
        return present_minus_absent(image.float() @ text.float().T / self.hparams.logit_temperature)

    def export_module(self) -> nn.Module:
        """Return the graph to export, with the prompts folded in.

        At inference the prompts are constants: fold their text embeddings in, so the exported graph holds the
        image tower only.
        """
        with torch.no_grad():
            text = self.prompts(self.backbone).float()
            dme = self.dme_prompts(self.backbone).float()
        return _FixedPromptRanking(self.backbone, text, dme, self.hparams.logit_temperature)


class _FixedPromptRanking(nn.Module):
    """The exported ranking graph: image tower plus constant grade and DME prompt embeddings."""

    def __init__(self, backbone: nn.Module, text: torch.Tensor, dme: torch.Tensor, logit_temperature: float):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("text", text)
        self.register_buffer("dme", dme)
        self.logit_temperature = logit_temperature

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grade logits [B, K] and DME logits [B]."""
        image = self.backbone.encode_image(images, normalize=True).float()
        logits = image @ self.text.T / self.logit_temperature
        return logits, present_minus_absent(image @ self.dme.T / self.logit_temperature)
