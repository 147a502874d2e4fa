"""``ChannelsLast``: an opt-in speed callback (``--trainer.callbacks+=drgrade.callbacks.ChannelsLast``)."""

from __future__ import annotations

import lightning as L
import torch


class ChannelsLast(L.Callback):
    """Store the model's 4-D weights channels-last (NHWC).

    Convolutions on GPUs with tensor cores (and oneDNN on recent CPUs) run faster in NHWC,
    especially under bf16 autocast; inputs are converted by the first convolution.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Convert the model's weights to channels-last once, before the run."""
        pl_module.to(memory_format=torch.channels_last)
