"""``PredictionWriter``: ``drgrade predict``'s predictions.csv, in the shared prediction schema."""

from __future__ import annotations

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter

from drgrade.predictions import PredictionRow, ungradable_summary, write_predictions
from drgrade.runs import run_dir


def _gather(items: list) -> list:
    """Every rank's items on every rank (identity outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


class PredictionWriter(BasePredictionWriter):
    """One row per input image: grade, probabilities, referable flag, or the error.

    Rows are in dataset order, each image once even when DDP padding repeats it.
    """

    def __init__(self) -> None:
        """Write once, at the end of the prediction epoch."""
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module, predictions, batch_indices) -> None:
        """Collect the batches' outputs from every rank and write predictions.csv on rank 0."""
        outputs = [
            (int(i), p, int(g), e, q)
            for batch in predictions
            for i, p, g, e, q in zip(
                batch["index"].tolist(),
                batch["probs"].tolist(),
                batch["grade"].tolist(),
                batch["error"],
                batch["quality"].tolist()
                if batch.get("quality") is not None
                else [None] * len(batch["error"]),
                strict=True,
            )
        ]
        outputs = _gather(outputs)
        path = run_dir(trainer) / "predictions.csv"  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        records = trainer.predict_dataloaders.dataset.records
        by_index = {index: (probs, grade, error, quality) for index, probs, grade, error, quality in outputs}
        rows = []
        for index in sorted(by_index):
            probs, grade, error, quality = by_index[index]
            record = records[index]
            graded = not error
            rows.append(
                PredictionRow(
                    str(record.path),
                    probs if graded else None,
                    grade if graded else None,
                    record.grade,
                    record.source,
                    error,
                    patient_id=record.patient_id,
                    rule=pl_module.referral_rule(),
                    quality=quality,
                )
            )
        skipped = getattr(trainer.datamodule, "skipped", [])
        rows += [PredictionRow(str(path), error=f"skipped: {reason}") for path, reason in skipped]
        write_predictions(path, rows)
        print(f"predictions for {len(rows)} image(s) written to {path}: {ungradable_summary(rows)}")
