"""A strong plain-CNN baseline: a timm ImageNet network (EfficientNet, ConvNeXt) fine-tuned whole.

What practitioners use when they do not use a CLIP model; an EfficientNet-B5 fine-tuned on
fundus photographs has matched retina foundation models out of domain. It shares ``BaseTask``'s
decision rule, evaluation, prediction, export and page, so it runs through ``reproduce``
protocols beside the CLIP models (``models: [fcn_clip, cnn_baseline]``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from drgrade.decision.rule import ThresholdObjective
from drgrade.errors import CheckpointError, OptionError
from drgrade.models.cnn import IMAGENET, build_cnn
from drgrade.provenance import weights_record
from drgrade.tasks.attention import grad_cam
from drgrade.tasks.base import TrainableTask


class CNNBaseline(TrainableTask):
    """A timm CNN with a 5-grade classifier, its body trained at ``image_lr``, its classifier at ``lr``.

    Args:
        cnn: a timm architecture: ``efficientnet_b0`` (small), ``efficientnet_b5`` (the strong
            baseline, 456 px), ``convnext_tiny``; ``test_efficientnet`` is timm's tiny test network.
        pretrained: ``imagenet`` (timm's default ImageNet weights of ``cnn``), another timm tag, a
            weights file, or None (random weights).
        image_size: input size (linked from ``data.image_size``).
        drop_rate: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing (the resampling sampler already evens out the
            grades, so the loss is unweighted).
        finetune_image: train the CNN's body too (False: only the classifier learns, a linear probe).
        image_lr: the body's learning rate (ImageNet features want a smaller step than a new classifier).
        lr: the classifier's learning rate.
        weight_decay: AdamW weight decay.
        threshold_objective: see ``BaseTask``.
        **kwargs: the remaining options of ``TrainableTask`` and ``BaseTask``.
    """

    run_name = "cnn_baseline"
    display_name = "CNN baseline"

    def __init__(
        self,
        cnn: str = "efficientnet_b0",
        pretrained: str | None = IMAGENET,
        image_size: int = 224,
        drop_rate: float = 0.3,
        label_smoothing: float = 0.0,
        finetune_image: bool = True,
        image_lr: float = 1e-4,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        threshold_objective: ThresholdObjective = "none",
        **kwargs,
    ):
        if not 0 <= drop_rate < 1 or not 0 <= label_smoothing < 1:
            numbers = f"{drop_rate}, {label_smoothing}"
            raise OptionError(
                f"model.init_args.drop_rate and label_smoothing must be in [0, 1), got {numbers}"
            )
        super().__init__(lr, weight_decay, finetune_image, image_lr, threshold_objective, **kwargs)

    def configure_models(self) -> None:
        """The timm network; its body frozen unless ``finetune_image``."""
        hp = self.hparams
        self.network = build_cnn(hp.cnn, hp.pretrained, hp.drop_rate)
        classifier = {id(p) for p in self.network.get_classifier().parameters()}
        for parameter in self.network.parameters():
            parameter.requires_grad_(hp.finetune_image or id(parameter) in classifier)
        pretraining = [] if hp.pretrained is None else ["ImageNet"]
        self.weights_record = weights_record(hp.cnn, hp.pretrained) | {"pretraining": pretraining}

    def configure_losses(self) -> None:
        """Cross-entropy (with label smoothing)."""
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.hparams.label_smoothing)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K]."""
        return self.network(images)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """The globally pooled feature vector the classifier reads, from the last feature map."""
        return self.network.forward_head(features, pre_logits=True)

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled feature vector [B, D] (what the typicality check measures)."""
        return self.pooled(self.network.forward_features(images))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the pooled features from one pass."""
        pooled = self.embedding(images)
        return self.network.get_classifier()(pooled), pooled

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """ImageNet's channel mean and spread, as timm's configuration of the network gives them."""
        config = self.network.pretrained_cfg
        return tuple(config["mean"]), tuple(config["std"])

    def parameter_groups(self) -> list[dict]:
        """The classifier at ``lr``, a trained body at ``image_lr``."""
        classifier = {id(p) for p in self.network.get_classifier().parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) in classifier]}]
        body = [p for p in trainable if id(p) not in classifier]
        if body:
            groups.append({"params": body, "lr": self.hparams.image_lr})
        return groups

    def attention_maps(
        self, images: torch.Tensor, grade: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Grad-CAM at the last feature map of ``grade`` (default: the grade the rule decides)."""

        def decided(logits: torch.Tensor) -> torch.Tensor:
            return self.rule(logits).grade if grade is None else grade

        maps, logits = grad_cam(self.network.forward_features, self.network.forward_head, images, decided)
        return maps, logits, "Grad-CAM (last feature map) of the decided grade"

    @classmethod
    def options_from_checkpoint(cls, options: dict, checkpoint: dict, path: Path) -> dict:
        """Refuse a recorded architecture other than the weights the checkpoint holds, before building it.

        The network is built on PyTorch's ``meta`` device (shapes only, no memory) and its tensor
        shapes are compared with the checkpoint's, so a checkpoint cannot name a huge network.
        """
        options = super().options_from_checkpoint(options, checkpoint, path)
        try:
            with torch.device("meta"):
                shapes = build_cnn(options.get("cnn", "efficientnet_b0"), None, 0.0).state_dict()
        except OptionError as error:
            raise CheckpointError(f"{path} was refused before building its model: {error}") from None
        state = checkpoint["state_dict"]
        wrong = [n for n, t in shapes.items() if getattr(state.get(f"network.{n}"), "shape", None) != t.shape]
        if wrong:
            raise CheckpointError(
                f"{path} was refused before building its model: its recorded network "
                f"{options.get('cnn')!r} does not match the weights it holds (e.g. {wrong[:3]})"
            )
        return options
