"""``SplitWriter``: every image's split as ``split.csv`` in the run directory, for audit."""

from __future__ import annotations

import csv

import lightning as L
from lightning.pytorch.callbacks import Callback

from drgrade.files import atomic_open
from drgrade.runs import run_dir


class SplitWriter(Callback):
    """After the datamodule's setup, write path, source, patient_id, grade and split per image.

    Images left out by the quality gate appear with split ``excluded`` and the reason in ``note``.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Runs after ``DRDataModule.setup``, so the split is known (none for a folder predict)."""
        datamodule = trainer.datamodule
        if not getattr(datamodule, "splits", None):
            return
        out = run_dir(trainer)  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        with atomic_open(out / "split.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "source", "patient_id", "grade", "split", "note"])
            for record, split in zip(datamodule.records, datamodule.splits, strict=True):
                writer.writerow([record.path, record.source, record.patient_id, record.grade, split, ""])
            for record, reason in getattr(datamodule, "excluded", []):
                writer.writerow(
                    [record.path, record.source, record.patient_id, record.grade, "excluded", reason]
                )
        print(f"split written to {out / 'split.csv'}")
