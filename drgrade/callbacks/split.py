"""The split's callbacks.

``SplitWriter`` writes ``split.csv`` for audit; ``SplitGuard`` refuses a checkpoint evaluated on
another split than its own.
"""

from __future__ import annotations

import csv

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from drgrade.errors import SplitMismatchError
from drgrade.files import atomic_open
from drgrade.runs import run_dir


class SplitWriter(Callback):
    """After the datamodule's setup, write path, source, patient_id, grade and split per image.

    Images left out appear with split ``excluded`` and the reason in ``note``; ``gate`` holds the
    quality gate's verdict on a labelled image kept although the gate refuses it
    (``data.quality_gate: keep`` or ``flag``), empty when the gate passes it.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Runs after ``DRDataModule.setup``, so the split is known (none for a folder predict)."""
        datamodule = trainer.datamodule
        if datamodule is None or not datamodule.splits:  # explain's own loader; a folder to predict
            return
        out = run_dir(trainer)  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        with atomic_open(out / "split.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "source", "patient_id", "grade", "split", "note", "gate"])
            verdicts = datamodule.gate_verdicts
            for record, split in zip(datamodule.records, datamodule.splits, strict=True):
                row = [record.path, record.source, record.patient_id, record.grade, split, ""]
                writer.writerow([*row, verdicts.get(record.path, "")])
            for excluded in datamodule.excluded:
                record = excluded.record
                grade = "" if record.grade < 0 else record.grade
                gate = excluded.reason if excluded.kind == "quality" else ""
                writer.writerow(
                    [record.path, record.source, record.patient_id, grade, "excluded", excluded.reason, gate]
                )
        print(f"split written to {out / 'split.csv'}")


class SplitGuard(Callback):
    """Refuse ``validate`` / ``test`` when the data's split differs from the checkpoint's.

    A checkpoint remembers which image went to which split; scoring it on another split (another
    seed, ratio or data mix) would count images it trained on as held out. ``predict`` is
    unaffected: new images have no split.
    """

    def on_validation_start(self, trainer: L.Trainer, pl_module) -> None:
        """Check before ``drgrade validate`` (not the validation passes of fit)."""
        if trainer.state.fn == TrainerFn.VALIDATING:
            self.check(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module) -> None:
        """Check before ``drgrade test``."""
        self.check(trainer, pl_module)

    @staticmethod
    def check(trainer: L.Trainer, pl_module) -> None:
        """Compare every split the model carries with the datamodule's.

        Args:
            trainer: the running trainer.
            pl_module: the task (its own and, for an ensemble, its members' splits).
        """
        current = trainer.datamodule.split_identity if trainer.datamodule is not None else None
        if current is None:
            return
        for source, expected in pl_module.split_identities():
            if expected["fingerprint"] != current["fingerprint"]:
                raise SplitMismatchError(
                    f"{source} was fitted on another split than this data gives "
                    f"(checkpoint: {describe(expected)}; now: {describe(current)}). Evaluating it here "
                    "would score images it was trained or calibrated on. Use the data options of its "
                    "fit (the run's config.yaml: --config runs/<model>/version_N/config.yaml), or "
                    "`drgrade predict` for new images."
                )


def describe(identity: dict) -> str:
    """Return a one-line summary of a split identity.

    Args:
        identity: fingerprint and settings.
    """
    return (
        f"split {identity['fingerprint'][:12]} of {identity['images']} images, "
        f"ratios {identity['split_ratios']}, seed {identity['split_seed']}"
    )
