"""``TrainingSummary``: a fit's epochs run, best epoch and stopping reason, beside its checkpoints.

Written as ``training.json`` in the fit's run folder when the fit ends; every later evaluation of
one of its checkpoints reads it into its provenance (a two-epoch run reads as one).
"""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping

from drgrade.files import atomic_write_text
from drgrade.provenance import TRAINING_FILE
from drgrade.runs import peek_checkpoint, run_dir


class TrainingSummary(Callback):
    """After ``fit``: ``training.json`` with the epochs run, the best checkpoint and its epoch."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the summary (rank 0)."""
        folder = run_dir(trainer)  # a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        best_epoch = peek_checkpoint(best)["epoch"] if best else None
        stopped = [c for c in trainer.callbacks if isinstance(c, EarlyStopping) and c.stopped_epoch > 0]
        score = callback.best_model_score if callback is not None else None
        summary = {
            "epochs_run": trainer.current_epoch,
            "max_epochs": trainer.max_epochs,
            "best_epoch": best_epoch,
            "best_checkpoint": best or None,
            "monitor": callback.monitor if callback is not None else None,
            "best_score": None if score is None else float(score),
            "stopped_early": bool(stopped),
        }
        atomic_write_text(folder / TRAINING_FILE, json.dumps(summary, indent=2))
