"""Attention-map arithmetic used by every task's ``attention_maps``.

Grad-CAM, map normalisation, and the lesion-mass fraction that scores a map against known lesions. Each task's
``attention_maps`` uses these.

Grad-CAM is our own short implementation rather than a library (captum, pytorch-grad-cam): the
backbone wrapper already splits the image tower at its last ResNet stage, frozen towers need the
graph built through them on demand, and it adds no dependency. It is the standard recipe
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
    target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of class ``target`` (default: the predicted class) at the ``features`` stage.

    ``features`` maps images to activations [B, C, h, w]; ``scores`` maps those to logits [B, K].
    Returns (maps [B, H, W] in [0, 1] at input size, logits [B, K]).
    """
    with torch.enable_grad():
        activations = features(images).detach().float().requires_grad_(True)
        logits = scores(activations)
        chosen = logits.argmax(dim=1) if target is None else target
        picked = logits.gather(1, chosen[:, None]).sum()
        (gradients,) = torch.autograd.grad(picked, activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return normalise_maps(cam[:, 0]), logits.detach()


def lesion_mass_fraction(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's total mass inside the lesion mask (the "pointing game" score).

    1 when all attention is on lesions, the mask's area fraction for a uniform map.
    """
    maps, masks = maps.float().flatten(1), (masks > 0).float().flatten(1)
    return (maps * masks).sum(1) / maps.sum(1).clamp_min(1e-12)
