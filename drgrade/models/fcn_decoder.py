"""FCN-CLIP's trainable part: Conv-BN-ReLU decoder, CBAM, global average pool, linear head."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from drgrade.errors import OptionError
from drgrade.models.cbam import CBAM


class FCNHead(nn.Module):
    """Three (by default) 3x3 Conv-BN-ReLU blocks of decreasing width -> CBAM -> GAP -> linear."""

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int] = (512, 256, 128),
        num_classes: int = 5,
        reduction: int = 16,
        dropout: float = 0.3,
        dme: bool = False,
    ):
        super().__init__()
        if not widths or any(b > a for a, b in itertools.pairwise(widths)):
            raise OptionError(
                f"model.init_args.decoder_widths must be non-empty and non-increasing, got {list(widths)}"
            )
        blocks: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            blocks += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.decoder = nn.Sequential(*blocks)
        self.cbam = CBAM(channels, reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        #: A second head on the same pooled features: the DME logit (``dme``).
        self.dme_classifier = nn.Linear(channels, 1) if dme else None

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits [B, K], CBAM spatial attention [B, 1, h, w])."""
        logits, _, spatial = self.forward_all(features)
        return logits, spatial

    def forward_all(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return (grade logits [B, K], DME logits [B] or None, CBAM spatial attention [B, 1, h, w])."""
        x, spatial = self.cbam(self.decoder(features))
        pooled = self.dropout(self.pool(x).flatten(1))
        dme = None if self.dme_classifier is None else self.dme_classifier(pooled)[:, 0]
        return self.classifier(pooled), dme, spatial
