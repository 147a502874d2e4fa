"""``PredictionWriter``: ``drgrade predict``'s predictions.csv, in the shared prediction schema."""

from __future__ import annotations

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter

from drgrade.errors import DrgradeError
from drgrade.exams import exam_summary, write_exams
from drgrade.predictions import (
    PredictionRow,
    checked_decisions,
    decided_row,
    ungradable_summary,
    write_predictions,
)
from drgrade.runs import run_dir


def named_patient(record) -> str:
    """The record's patient when its data or the exam manifest names one (else empty: a plain file)."""
    return "" if not record.source and record.patient_id == str(record.path) else record.patient_id


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
        thresholds, cuts = pl_module.rule.thresholds.tolist(), pl_module.clinical_cuts()
        outputs = []
        for batch in predictions:
            quality = (
                batch["quality"].tolist()
                if batch.get("quality") is not None
                else [None] * len(batch["error"])
            )
            p_dme = batch.get("p_dme")
            p_dme = None if p_dme is None else p_dme.tolist()
            decided = checked_decisions(batch["outputs"], thresholds, p_dme=p_dme, **cuts)
            outputs += zip(batch["index"].tolist(), decided, batch["error"], quality, strict=True)
        outputs = _gather(outputs)
        path = run_dir(trainer) / "predictions.csv"  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        records = trainer.predict_dataloaders.dataset.records
        by_index = {index: rest for index, *rest in outputs}  # DDP padding repeats images: once each
        rows = []
        for index in sorted(by_index):
            decision, error, quality = by_index[index]
            record = records[index]
            row = PredictionRow(
                str(record.path),
                None,
                record.grade,
                record.source,
                error,
                patient_id=named_patient(record),
                quality=quality,
                eye=record.eye,
                field=record.field,
            )
            rows.append(row if error else decided_row(row, decision))
        skipped = trainer.datamodule.skipped if trainer.datamodule is not None else []
        rows += [PredictionRow(str(path), error=f"skipped: {reason}") for path, reason in skipped]
        write_predictions(path, rows, pl_module.display_name, pl_module.origin)
        exams = write_exams(path.with_name("exams.csv"), [row.as_dict() for row in rows])
        if pl_module.predictions_out:
            write_predictions(pl_module.predictions_out, rows)
            print(f"and to {pl_module.predictions_out}")
        print(f"predictions for {len(rows)} image(s) written to {path}: {ungradable_summary(rows)}")
        print(f"{exam_summary(exams)} in {path.with_name('exams.csv')}")
        if rows and all(row.error for row in rows):
            raise DrgradeError(f"no image could be graded; every reason is in {path}")
