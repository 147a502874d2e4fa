"""CBAM attention exactly as the paper's Appendix A: channel gate, then spatial gate.

Note the paper's spatial gate is a 7x7 convolution over *all* channels (not over the
avg/max-pooled pair of the original CBAM paper); we follow the paper being reproduced.
"""

from __future__ import annotations

import torch
from torch import nn


class CBAM(nn.Module):
    """CBAM: a channel gate, then a spatial gate.

    Channel gate: avg-pool, 1x1 bottleneck /reduction, ReLU, 1x1, sigmoid. Spatial gate: 7x7 conv to
    one map, sigmoid.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.spatial_gate = nn.Sequential(nn.Conv2d(channels, 1, 7, padding=3), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (gated features, spatial attention map [B, 1, h, w]).

        The map is where the model looks, so it is an output rather than state kept on the module.
        """
        x = x * self.channel_gate(x)
        spatial = self.spatial_gate(x)
        return x * spatial, spatial
