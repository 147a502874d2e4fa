"""``CheckpointArtifact``: the best checkpoint of a fit as a W&B model artifact, offline runs included.

Lightning's own ``WandbLogger(log_model=True)`` refuses offline mode (its uploads need a
server); an artifact logged into an offline run is stored with it and uploaded by
``wandb sync``. Opt-in: ``--trainer.callbacks+=drgrade.callbacks.CheckpointArtifact``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger


class CheckpointArtifact(Callback):
    """After ``fit``, log the best checkpoint (and its selection score) to every W&B run."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log ``best-*.ckpt`` as a ``model`` artifact named after the run."""
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not best or not loggers or not trainer.is_global_zero:
            return
        import wandb

        score = trainer.checkpoint_callback.best_model_score
        for logger in loggers:
            run = logger.experiment
            artifact = wandb.Artifact(
                f"model-{run.id}",
                type="model",
                metadata={
                    "monitor": trainer.checkpoint_callback.monitor,
                    "score": None if score is None else float(score),
                },
            )
            artifact.add_file(best, name=Path(best).name)
            run.log_artifact(artifact, aliases=["best"])
