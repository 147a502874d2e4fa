"""Where a task looks: map normalisation, Grad-CAM, and the Grad-CAM mixin of the CLIP-logit tasks.

FCN-CLIP shows CBAM's spatial attention (``normalise_maps``); zero-shot and ranking show Grad-CAM
at the image tower's last stage (``GradCAMAttention``) of the grade the decision rule decided
(temperature and thresholds applied), the grade shown beside the map, not the argmax of the
logits: for a thresholded model the two differ, and a map of the argmax would explain another
grade than the one it is captioned with.

Grad-CAM is our own short implementation rather than a library (captum, pytorch-grad-cam): every
backbone already splits its image tower where Grad-CAM looks (``cam_activations``), frozen towers
need the graph built through them on demand, and it adds no dependency. It is the standard recipe
(Selvaraju et al. 2017): weights = spatial mean of d score / d activations, map = ReLU of the
weighted sum of activation channels, upsampled to the input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map to [0, 1]: the least-attended place 0, the most attended 1.

    Min-max rather than divide-by-max because a sigmoid gate (CBAM) varies over a narrow band
    far from 0; its contrast, not its absolute level, is where the model looks. A constant map
    carries no localisation, so it becomes uniform (all ones) rather than NaN.
    """
    flat = maps.flatten(1)
    low = flat.amin(dim=1).view(-1, *[1] * (maps.dim() - 1))
    span = (flat.amax(dim=1) - flat.amin(dim=1)).view(-1, *[1] * (maps.dim() - 1))
    return torch.where(span > 1e-12, (maps - low) / span.clamp_min(1e-12), torch.ones_like(maps))


def grad_cam(
    features: Callable[[torch.Tensor], torch.Tensor],
    scores: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    target: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
    as_maps: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of class ``target`` (default: the predicted class) at the ``features`` stage.

    Args:
        features: images -> activations (any layout ``as_maps`` turns into [B, C, h, w]).
        scores: activations -> logits [B, K].
        images: the input batch.
        target: the class whose score is explained per image, or a function of the logits
            choosing it (the decision rule); default: the argmax.
        as_maps: activations (or their gradients) as spatial maps (a ViT's patch tokens as a grid).

    Returns:
        (maps [B, H, W] in [0, 1] at input size, logits [B, K]).
    """
    with torch.enable_grad():
        activations = features(images).detach().float().requires_grad_(True)
        logits = scores(activations)
        if target is None:
            chosen = logits.argmax(dim=1)
        else:
            chosen = target(logits.detach()) if callable(target) else target
        picked = logits.gather(1, chosen[:, None]).sum()
        (gradients,) = torch.autograd.grad(picked, activations)
    maps = as_maps(activations.detach())
    weights = as_maps(gradients).mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return normalise_maps(cam[:, 0]), logits.detach()


class GradCAMAttention:
    """Attention maps (and the DME output) of tasks whose logits come from pooled image embeddings.

    The task provides ``embedding_logits`` and ``embedding_dme_logits``; the map is Grad-CAM of the
    backbone's ``cam_activations`` (a ResNet's last stage, a ViT's last block), through
    ``cam_embedding``.
    """

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the pooled embedding they come from, in one pass of the image tower."""
        embedding = self.embedding(images)
        return self.embedding_logits(F.normalize(embedding, dim=-1)), embedding

    def forward_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grade logits [B, K] and DME logits [B] from one pass of the image tower."""
        logits, dme, _ = self.embed_with_dme(images)
        return logits, dme

    def embed_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grade logits, DME logits and the pooled embedding both come from, in one pass."""
        embedding = self.embedding(images)
        normalised = F.normalize(embedding, dim=-1)
        return self.embedding_logits(normalised), self.embedding_dme_logits(normalised), embedding

    def attention_maps(
        self, images: torch.Tensor, grade: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(Grad-CAM maps [B, S, S], logits [B, K], method) of ``grade`` (default: the rule's decision)."""
        backbone = self.backbone

        def pooled_scores(activations: torch.Tensor) -> torch.Tensor:
            return self.embedding_logits(F.normalize(backbone.cam_embedding(activations), dim=-1))

        def decided(logits: torch.Tensor) -> torch.Tensor:
            return self.rule(logits).grade if grade is None else grade

        maps, logits = grad_cam(
            backbone.cam_activations, pooled_scores, images, target=decided, as_maps=backbone.cam_maps
        )
        return maps, logits, f"Grad-CAM ({backbone.cam_layer}) of the decided grade"


def present_minus_absent(pair: torch.Tensor) -> torch.Tensor:
    """One DME logit from [..., 2] logits of (no DME, DME) prompts: its sigmoid is their softmax."""
    return pair[..., 1] - pair[..., 0]
