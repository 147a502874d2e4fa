"""Test-time augmentation: the views of an image whose logits a decision averages.

A fundus photograph has no preferred handedness or orientation a grader relies on: its left-right
mirror has the fellow eye's geometry, its up-down mirror and right-angle turns are photographs
taken with the camera turned. Averaging the logits of such views trades a few forward passes for
a steadier answer. The sets (``--model.init_args.tta``):

- ``none``: the image as given (one pass);
- ``flip``: the image and its left-right mirror (two passes);
- ``flip4``: the image, its left-right, up-down and both-ways mirrors (four passes);
- ``rot4``: the image turned by 0, 90, 180 and 270 degrees (four passes).

Every view is a pure index permutation of the pixels (no interpolation), so no view invents
detail, and each traces into an ONNX graph as slices and transposes (``drgrade export``).
Logits, not probabilities, are averaged: the decision rule (temperature, thresholds) then
applies to them exactly as to a single view's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

View = Callable[[torch.Tensor], torch.Tensor]


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


#: The views of each test-time augmentation set, the image as given first.
VIEWS: dict[str, tuple[View, ...]] = {
    "none": (_identity,),
    "flip": (_identity, lambda x: x.flip(-1)),
    "flip4": (_identity, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-2, -1)),
    # torch.rot90 by 90, 180, 270 degrees, written as the mirrors and transposes ONNX has
    "rot4": (
        _identity,
        lambda x: x.flip(-1).transpose(-2, -1),
        lambda x: x.flip(-2, -1),
        lambda x: x.transpose(-2, -1).flip(-1),
    ),
}
#: The set names, as ``--model.init_args.tta`` and a protocol's ``tta`` accept them.
TTA_SETS = tuple(VIEWS)


def augmented_logits(
    logits_of: nn.Module | Callable,
    images: torch.Tensor,
    tta: str,
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean of ``logits_of`` over the ``tta`` set's views of ``images`` (one pass per view).

    Args:
        logits_of: images [B, 3, S, S] -> logits [B, K].
        images: normalised square images.
        tta: a name in ``VIEWS``.
        logits: ``logits_of(images)`` when already computed (with the DME logits of the same pass).
    """
    views = VIEWS[tta]
    logits = logits_of(images) if logits is None else logits
    for view in views[1:]:
        logits = logits + logits_of(view(images))
    return logits / len(views) if len(views) > 1 else logits


class AugmentedLogits(nn.Module):
    """A logits module with ``tta`` applied: what ONNX export traces, so the graph holds the views."""

    def __init__(self, logits: nn.Module, tta: str):
        super().__init__()
        self.logits = logits
        self.tta = tta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits averaged over the views."""
        return augmented_logits(self.logits, images, self.tta)
