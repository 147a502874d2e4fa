"""What every model needs from a vision-language backbone, whatever its family.

The three models and the ensemble use nothing else:

- the image side: ``feature_maps`` (FCN-CLIP's decoder reads a spatial map: ``layer4`` is the
  deepest, ``layer3`` the one before, whatever the family calls them), ``encode_image`` (the
  pooled, projected embedding), the Grad-CAM pair ``cam_activations`` / ``cam_embedding`` (a
  zero-shot or ranking model's attention: activations that the embedding is computed from), the
  input normalisation and the size the weights were trained at;
- the text side: ``tokenize``, ``token_embeddings`` and ``encode_prompt_embeddings`` (the ranking
  model's learnable context goes into the token-embedding space), ``end_positions`` (where each
  prompt ends), ``zero_shot_classifier`` (class embeddings averaged over templates) and the
  ``logit_scale`` the weights were trained with;
- parameters per tower and freezing that keeps a frozen tower's BatchNorm statistics fixed;
- what the published weights were trained on (``pretraining_datasets``), so an evaluation on
  one of them says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Feature-map names every backbone answers: the deepest map and the one before it.
FEATURE_LAYERS = ("layer3", "layer4")


class Backbone(nn.Module):
    """The interface (see the module docstring); one subclass per family.

    Subclasses set ``image_tower`` (the module whose parameters are the image side) and call
    ``finish_freezing`` at the end of their constructor.

    Args:
        freeze_image: no gradients for the image tower, and its BatchNorm statistics stay fixed.
        freeze_text: the same for the text tower.
    """

    #: The family's name in messages and provenance.
    family = ""
    #: The image side (its parameters are ``image_parameters``).
    image_tower: nn.Module

    def __init__(self, freeze_image: bool = True, freeze_text: bool = True):
        super().__init__()
        self.freeze_image = freeze_image
        self.freeze_text = freeze_text
        #: drgrade source names the loaded weights were trained on (empty: none, or random weights).
        self.pretraining_datasets: tuple[str, ...] = ()

    def finish_freezing(self) -> None:
        """Apply the freezing options (call once the towers exist)."""
        for parameter in self.image_parameters():
            parameter.requires_grad_(not self.freeze_image)
        for parameter in self.text_parameters():
            parameter.requires_grad_(not self.freeze_text)
        # Lightning keeps each module's mode as set here: frozen towers eval, trainable ones train
        self.train()

    # -- parameters and modes -------------------------------------------------------------------
    def image_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the image tower."""
        return list(self.image_tower.parameters())

    def text_modules(self) -> list[nn.Module]:
        """The modules of the text tower (frozen ones stay in eval mode)."""
        raise NotImplementedError

    def text_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the text tower."""
        return [p for module in self.text_modules() for p in module.parameters()]

    def train(self, mode: bool = True) -> Backbone:
        """Frozen towers stay in eval mode so their BatchNorm statistics never move."""
        super().train(mode)
        if self.freeze_image:
            self.image_tower.eval()
        if self.freeze_text:
            for module in self.text_modules():
                module.eval()
        return self

    # -- image side -----------------------------------------------------------------------------
    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) per channel, on a 0-1 scale, the weights expect."""
        raise NotImplementedError

    @property
    def embed_dim(self) -> int:
        """Width of the joint image-text embedding."""
        raise NotImplementedError

    def feature_channels(self, layer: str) -> int:
        """Channels of the ``layer`` feature map."""
        raise NotImplementedError

    def feature_maps(
        self, images: torch.Tensor, layers: Sequence[str] = ("layer4",)
    ) -> dict[str, torch.Tensor]:
        """Spatial maps [B, C, h, w] by name (``FEATURE_LAYERS``), stopping after the deepest asked."""
        raise NotImplementedError

    def freeze_after(self, layer: str) -> None:
        """No gradients for what comes after ``layer`` (a model reading that map never uses it)."""
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The pooled, projected image embedding [B, D]."""
        raise NotImplementedError

    def cam_activations(self, images: torch.Tensor) -> torch.Tensor:
        """The activations Grad-CAM weighs, from which ``cam_embedding`` computes the embedding."""
        raise NotImplementedError

    def cam_embedding(self, activations: torch.Tensor) -> torch.Tensor:
        """The (unnormalised) image embedding from ``cam_activations``' output."""
        raise NotImplementedError

    def cam_maps(self, activations: torch.Tensor) -> torch.Tensor:
        """``cam_activations``' output (or its gradient) as spatial maps [B, C, h, w]."""
        return activations

    #: Which activations Grad-CAM uses, for captions (``layer4``, ``last block``).
    cam_layer = "layer4"

    # -- text side ------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids [N, L] of ``texts`` on the model's device."""
        raise NotImplementedError

    def end_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Index of each sequence's end token [N] (prompt slots lie between the start and it)."""
        raise NotImplementedError

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The token embedding of ``tokens`` [N, L, W] (the input of prompt learning)."""
        raise NotImplementedError

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings [N, D] of token ids."""
        return self.encode_prompt_embeddings(self.token_embeddings(tokens), tokens, normalize)

    def encode_prompt_embeddings(
        self, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Text embeddings [N, D] from prompt *embeddings*; ``tokens`` give the sequences' layout."""
        raise NotImplementedError

    def zero_shot_classifier(self, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
        """[D, K]: per class, the normalised mean of its prompts' normalised embeddings.

        Each class's prompts are encoded as one batch, as FLAIR encodes a class's descriptions.

        Args:
            prompts: per class, its prompts.
        """
        columns = []
        with torch.no_grad():
            for texts in prompts:
                mean = self.encode_text(self.tokenize(list(texts)), normalize=True).mean(dim=0)
                columns.append(mean / mean.norm())
        return torch.stack(columns, dim=1)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The logit scale the weights were trained with (a plain number, not a log)."""
        raise NotImplementedError
