"""``ValidationPredictionsWriter``: the validation pass a checkpoint's decision rule was fitted on.

Every fitting validation pass refits the rule (temperature, thresholds, operating cuts, uncertainty
cut) on its own predictions; only the pass behind the best checkpoint is kept, as
``val_predictions.csv`` beside that checkpoint, in the prediction schema. From it alone an
independent recomputation reproduces every cut and threshold the checkpoint carries (the
probabilities are written to float32 precision), so a run folder can be audited without the model.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from drgrade.predictions import PredictionRow, checkpoint_label, write_predictions

#: The file's name, beside the checkpoint whose rule it was fitted on.
VAL_PREDICTIONS = "val_predictions.csv"


class ValidationPredictionsWriter(Callback):
    """Keeps each fitting validation pass's rows; writes those of the best checkpoint beside it."""

    def __init__(self) -> None:
        """Nothing pending, nothing written yet."""
        self.pending: tuple[list[PredictionRow], str] | None = None
        self.written_for = ""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep the rows of a pass that fitted the rule (rank 0; the checkpoint is saved after this hook)."""
        result = pl_module.results.get("val")
        if trainer.sanity_checking or result is None or not trainer.is_global_zero:
            return
        if not pl_module.should_fit_rule("val"):
            return
        from drgrade.callbacks.evaluation import prediction_rows

        records = trainer.datamodule.records_of("val")
        self.pending = (
            prediction_rows(result, records, pl_module.rule.thresholds.tolist()),
            pl_module.display_name,
        )

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Before the next pass replaces the rows: write them if the last pass became the best."""
        self.follow_best(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the epoch's checkpoints are saved."""
        self.follow_best(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the last validation pass."""
        self.follow_best(trainer)

    def follow_best(self, trainer: L.Trainer) -> None:
        """Write the pending rows beside the best checkpoint when it changed since the last write."""
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        if best and best != self.written_for and Path(best).is_file():
            self.write_beside(Path(best))

    def write_beside(self, checkpoint: Path) -> Path | None:
        """``val_predictions.csv`` beside ``checkpoint``, from the latest fitting pass (None: none kept)."""
        if self.pending is None:
            return None
        rows, model = self.pending
        path = write_predictions(
            checkpoint.parent / VAL_PREDICTIONS, rows, model, checkpoint_label(checkpoint)
        )
        self.written_for = str(checkpoint)
        self.pending = None
        return path
