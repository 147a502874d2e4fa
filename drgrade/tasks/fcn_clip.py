"""Hybrid FCN-CLIP: frozen CLIP feature maps -> Conv-BN-ReLU decoder -> CBAM -> GAP -> linear."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch
import torch.nn.functional as F

from drgrade.decision.rule import ThresholdObjective
from drgrade.errors import OptionError
from drgrade.grades import NUM_GRADES
from drgrade.models.fcn_decoder import FCNHead
from drgrade.models.losses import WeightedCEFocalLoss, inverse_frequency_weights
from drgrade.tasks.attention import normalise_maps
from drgrade.tasks.base import TrainableTask


class FCNCLIP(TrainableTask):
    """FCN-CLIP with CBAM (paper section 4.2, Appendix A).

    Args:
        backbone: ``RN50``, ``ViT-B-16``, ``flair``, ... (``drgrade.models.backbones``).
        pretrained: the backbone's weights: a tag (``openai``), a file, or None (random).
        image_size: input size (linked from ``data.image_size``).
        feature_layer: which stage's feature map feeds the decoder (``layer3`` or ``layer4``).
        decoder_widths: output channels of the Conv-BN-ReLU blocks, non-increasing.
        dropout: dropout before the linear head.
        reduction: CBAM channel-gate bottleneck ratio.
        class_weights: CE class weights; None derives N / (K * n_k) from the counts the loss sees
            per epoch (the resampling sampler's targets; the raw split without a sampler).
        gamma: focal-loss focusing parameter.
        ce_weight: weight of the class-weighted CE in the loss.
        focal_weight: weight of the focal loss in the loss.
        finetune_image: see ``TrainableTask``.
        image_lr: see ``TrainableTask``.
        lr: see ``TrainableTask``.
        weight_decay: see ``TrainableTask``.
        threshold_objective: see ``BaseTask``.
        text_encoder: ``flair`` only: its text model's folder (``drgrade.models.backbones.flair``).
        dme_weight: weight of the DME head's loss (binary cross-entropy, masked where the source
            grades no DME) beside the grade loss.
        **kwargs: the remaining options of ``TrainableTask`` and ``BaseTask``.
    """

    run_name = "fcn_clip"
    display_name = "FCN-CLIP"
    has_dme = True

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int = 224,
        feature_layer: Literal["layer3", "layer4"] = "layer4",
        decoder_widths: tuple[int, ...] = (512, 256, 128),
        dropout: float = 0.3,
        reduction: int = 16,
        class_weights: list[float] | None = None,
        gamma: float = 2.0,
        ce_weight: float = 1.0,
        focal_weight: float = 1.0,
        finetune_image: bool = False,
        image_lr: float = 1e-5,
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        threshold_objective: ThresholdObjective = "none",
        text_encoder: str | dict | None = None,
        dme_weight: float = 1.0,
        **kwargs,
    ):
        if not dme_weight >= 0:
            raise OptionError(f"model.init_args.dme_weight must be >= 0, got {dme_weight}")
        super().__init__(lr, weight_decay, finetune_image, image_lr, threshold_objective, **kwargs)
        self.dme_weight = dme_weight

    def configure_models(self) -> None:
        """The backbone (frozen up to ``feature_layer``), the decoder head with its DME head, the DME cut."""
        hp = self.hparams
        self.backbone = self.build_backbone()
        self.backbone.freeze_after(hp.feature_layer)
        self.head = FCNHead(
            self.backbone.feature_channels(hp.feature_layer),
            hp.decoder_widths,
            NUM_GRADES,
            hp.reduction,
            hp.dropout,
            dme=True,
        )
        self.register_dme_cut()

    def configure_losses(self) -> None:
        """Class-weighted CE + focal loss."""
        hp = self.hparams
        weights = torch.ones(NUM_GRADES) if hp.class_weights is None else torch.tensor(hp.class_weights)
        if len(weights) != NUM_GRADES:
            raise OptionError(
                f"model.init_args.class_weights needs {NUM_GRADES} values, got {hp.class_weights}"
            )
        self.criterion = WeightedCEFocalLoss(weights.float(), hp.gamma, hp.ce_weight, hp.focal_weight)

    def setup(self, stage: str) -> None:
        """Before fitting, CE class weights from what the loss sees when none are given.

        That is the sampler's per-epoch target counts when resampling (the imbalance is then
        corrected once, by the sampler, and the weights only even out the targets), the raw
        training counts without a sampler.
        """
        datamodule = self.trainer.datamodule
        if stage == "fit" and self.hparams.class_weights is None and datamodule is not None:
            weights = inverse_frequency_weights(datamodule.loss_class_counts)
            self.criterion.class_weights.copy_(weights)
            self.print(
                f"FCN-CLIP class weights from the {datamodule.hparams.sampler} sampler's per-epoch "
                f"counts: {[round(w, 3) for w in weights.tolist()]}"
            )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The image tower's feature map; a frozen tower runs without building a graph."""
        layer = self.hparams.feature_layer
        with nullcontext() if self.hparams.finetune_image else torch.no_grad():
            return self.backbone.feature_maps(images, (layer,))[layer]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K]."""
        return self.head(self.features(images).float())[0]

    def forward_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Grade logits [B, K] and DME logits [B] from one pass (the two heads share the decoder)."""
        logits, dme, _ = self.head.forward_all(self.features(images).float())
        return logits, dme

    def embed_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Grade logits, DME logits and pooled features from one pass of the image tower."""
        features = self.features(images).float()
        logits, dme, _ = self.head.forward_all(features)
        return logits, dme, features.mean((2, 3))

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The decoder's input feature map, average-pooled: what the head sees, as one vector."""
        return self.features(images).float().mean((2, 3))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and pooled features from one pass of the image tower."""
        features = self.features(images).float()
        return self.head(features)[0], features.mean((2, 3))

    @torch.no_grad()
    def attention_maps(
        self, images: torch.Tensor, grade: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """CBAM's spatial attention at input resolution, with the logits of the same pass.

        CBAM gates the features before the classifier, so its map is one for every grade: it is
        the map behind whichever grade the rule decides (``grade`` changes nothing).
        """
        logits, spatial = self.head(self.features(images).float())
        spatial = F.interpolate(spatial, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return normalise_maps(spatial[:, 0]), logits, "CBAM spatial attention"
