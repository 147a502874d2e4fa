"""``Engine``: every stage of drgrade over a task and a data module, in one place.

The commands parse options and build the objects (``DRGradeCLI`` from the config files,
``reproduce`` stage after stage); the engine runs them: ``fit``, ``validate``, ``test``,
``predict``, ``explain`` and ``export``. What every stage shares lives here once:

- the trainer's defaults (checkpoints written atomically; the split guard always on);
- the checkpoint policy at run time: a trainable model is evaluated or used only from a
  checkpoint (or as the labelled untrained baseline), and the result writers are told which
  checkpoint their files describe (``announce``), so the task holds no run state;
- ``fit`` of a model with nothing to train (zero-shot, the ensemble) = a validation pass that
  fits its decision rule, then a saved checkpoint, so every model leaves a checkpoint behind.

The checkpoint policy's parse-time half (rebuilding the model from the options a checkpoint
recorded, before anything is instantiated) is ``drgrade.commands.checkpoint_policy``.

    engine = Engine(max_epochs=20)
    best = engine.fit(task, datamodule)
    engine.test(load_task(best), datamodule, ckpt_path=best)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from drgrade.callbacks.checkpoint_io import AtomicCheckpointIO
from drgrade.callbacks.split import SplitGuard
from drgrade.callbacks.validation_predictions import ValidationPredictionsWriter
from drgrade.callbacks.writer import RunWriter
from drgrade.errors import OptionError
from drgrade.predictions import checkpoint_label
from drgrade.provenance import UNTRAINED
from drgrade.runs import run_dir
from drgrade.tasks.base import BaseTask

#: Private Lightning names drgrade relies on, and why (an upgrade that changes one breaks only these).
PRIVATE_NAMES = {
    "WandbLogger._wandb_init": "drop the deprecated 'anonymous' argument Lightning gives every wandb.init",
}
#: Where ``fit`` of a model with nothing to train saves it, under the run folder.
VALIDATED = Path("checkpoints") / "best-validated.ckpt"


class Engine:
    """Runs drgrade's stages with one trainer.

    Args:
        trainer: a configured trainer (``DRGradeCLI`` builds it from ``configs/trainer.yaml``);
            None builds one from ``trainer_options`` with drgrade's defaults.
        **trainer_options: ``lightning.Trainer`` options, when no trainer is given.
    """

    def __init__(self, trainer: L.Trainer | None = None, **trainer_options: Any) -> None:
        self.trainer = trainer or L.Trainer(**trainer_options | self.trainer_defaults(trainer_options))
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                # PRIVATE_NAMES: Lightning always passes ``anonymous`` (None) to wandb.init, which then
                # warns on every run that the setting is deprecated; leaving it out changes nothing else
                logger._wandb_init.pop("anonymous", None)
        if not any(isinstance(c, SplitGuard) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(SplitGuard())  # a safety check, not a writer: never left out

    @staticmethod
    def trainer_defaults(configured: dict) -> dict:
        """The trainer options drgrade adds: atomic checkpoint saving, unless plugins are configured."""
        return {} if configured.get("plugins") else {"plugins": [AtomicCheckpointIO()]}

    # -- the stages ---------------------------------------------------------------------------------
    def fit(self, task: BaseTask, datamodule: L.LightningDataModule, **options: Any) -> Path | None:
        """Train ``task``, or make and save the validation choices of a model with nothing to train.

        Returns the checkpoint to use next (the best one; None when no checkpoint was kept).

        Args:
            task: the model.
            datamodule: the data.
            **options: ``Trainer.fit`` options (``ckpt_path`` to resume).
        """
        if not task.trainable:
            return self.validate_and_save(task, datamodule)
        self.announce("")
        try:
            self.trainer.fit(task, datamodule=datamodule, **options)
        except SystemExit:  # Lightning's graceful shutdown after Ctrl+C exits there
            if self.trainer.interrupted:
                raise KeyboardInterrupt from None  # drgrade.cli.main says how to resume
            raise
        callback = self.trainer.checkpoint_callback
        return Path(callback.best_model_path) if callback and callback.best_model_path else None

    def validate_and_save(self, task: BaseTask, datamodule: L.LightningDataModule) -> Path:
        """``fit`` of a model with nothing to train: a validation pass fits its rule, then it is saved.

        The pass fits the decision rule (and a zero-shot model's template set); its rows are written
        beside the checkpoint as ``val_predictions.csv``. The checkpoint then serves ``test``,
        ``predict``, ``explain`` and ``export`` like any other.
        """
        path = run_dir(self.trainer) / VALIDATED
        self.announce("")
        with task.refitting():
            self.trainer.validate(task, datamodule=datamodule, verbose=False)
        task.saving_to(path)
        self.trainer.save_checkpoint(path)
        for callback in self.trainer.callbacks:
            if isinstance(callback, ValidationPredictionsWriter):
                callback.write_beside(path)
        print(f"{type(task).__name__}: validation choices saved to {path}")
        return path

    def validate(self, task: BaseTask, datamodule: L.LightningDataModule, **options: Any) -> list:
        """Evaluate on the validation split (see ``evaluate`` for the options)."""
        return self.evaluate("validate", task, datamodule, **options)

    def test(self, task: BaseTask, datamodule: L.LightningDataModule, **options: Any) -> list:
        """Evaluate on the test split (see ``evaluate`` for the options)."""
        return self.evaluate("test", task, datamodule, **options)

    def evaluate(
        self,
        stage: str,
        task: BaseTask,
        datamodule: L.LightningDataModule,
        ckpt_path: str | Path | None = None,
        allow_untrained: bool = False,
        **options: Any,
    ) -> list:
        """``validate`` or ``test`` of ``task`` from ``ckpt_path``.

        Args:
            stage: ``validate`` or ``test``.
            task: the model (rebuilt as the checkpoint recorded: ``checkpoint_policy``).
            datamodule: the data.
            ckpt_path: the checkpoint whose weights are evaluated.
            allow_untrained: evaluate a trainable model without a checkpoint (the labelled baseline).
            **options: further ``Trainer.validate`` / ``Trainer.test`` options.
        """
        self.announce(self.origin(stage, task, ckpt_path, allow_untrained))
        run = getattr(self.trainer, stage)
        return run(task, datamodule=datamodule, ckpt_path=ckpt_path, **options)

    def predict(
        self,
        task: BaseTask,
        datamodule: L.LightningDataModule,
        ckpt_path: str | Path | None = None,
        allow_untrained: bool = False,
        out: Path | None = None,
        **options: Any,
    ) -> None:
        """Grade the data's photographs into predictions.csv (and ``out``, when given).

        Args:
            task: the model.
            datamodule: the data (``predict_dir``, or the test split).
            ckpt_path: the checkpoint whose weights grade.
            allow_untrained: grade with a trainable model without a checkpoint.
            out: also write the predictions here (needs a ``PredictionWriter`` among the callbacks).
            **options: further ``Trainer.predict`` options.
        """
        from drgrade.callbacks.predictions import PredictionWriter

        writers = [c for c in self.trainer.callbacks if isinstance(c, PredictionWriter)]
        if out is not None and not writers:
            raise OptionError(
                "predict --out needs the PredictionWriter callback, which the trainer's callbacks leave out"
            )
        for writer in writers:
            writer.copy_to = out
        self.announce(self.origin("predict", task, ckpt_path, allow_untrained))
        self.trainer.predict(task, datamodule=datamodule, ckpt_path=ckpt_path, **options)

    def explain(self, task: BaseTask, dataset, out: Path, name: str, origin: str = "") -> None:
        """Attention maps, overlays and lesion-mass scores of ``task`` on ``dataset``, under ``out``.

        A trainer of its own: one device, no logger, autograd on (Grad-CAM needs gradients).

        Args:
            task: the model.
            dataset: a ``FundusDataset`` (its records name the photographs).
            out: this model's folder.
            name: the model's name in the files.
            origin: its checkpoint as result files name it.
        """
        from torch.utils.data import DataLoader

        from drgrade.callbacks.attention import AttentionWriter

        trainer = L.Trainer(
            accelerator=self.trainer.accelerator,
            devices=1,
            logger=False,
            inference_mode=False,
            callbacks=[AttentionWriter(out, name, origin=origin)],
            enable_model_summary=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=out,
        )
        loader = DataLoader(dataset, batch_size=16, num_workers=0)
        trainer.predict(task, dataloaders=loader, return_predictions=False)

    def export(self, task: BaseTask, out: Path, origin: str = "", evaluation: Path | None = None) -> Path:
        """Write ``task`` as ONNX at the image size it was trained at, with its model card beside it.

        Args:
            task: the model (loaded from its checkpoint).
            out: the ``.onnx`` file.
            origin: its checkpoint as result files name it.
            evaluation: the checkpoint's metrics.json for the card's figures (None: none found).

        Returns:
            the ONNX file written.
        """
        from drgrade.files import atomic_write_text
        from drgrade.serving.card import card_facts, card_markdown, card_path
        from drgrade.serving.export import export_onnx

        size = task.hparams.image_size  # the size it was trained at, whatever --data.image_size says
        facts = card_facts(task, size, evaluation, origin)
        written = export_onnx(task, out, size, card=facts, origin=origin)
        atomic_write_text(card_path(written), card_markdown(facts))
        return written

    # -- what the writers are told --------------------------------------------------------------------
    @staticmethod
    def origin(stage: str, task: BaseTask, ckpt_path: str | Path | None, allow_untrained: bool) -> str:
        """The checkpoint a stage's results name; a trainable model without one is refused or the baseline.

        Raises:
            OptionError: a trainable model without a checkpoint, not allowed as the untrained baseline.
        """
        if ckpt_path:
            return checkpoint_label(ckpt_path)
        if not task.trainable:
            return ""
        if not allow_untrained:
            raise OptionError(
                f"{stage} of {type(task).__name__} needs a trained checkpoint (ckpt_path); "
                "allow_untrained runs the untrained baseline instead"
            )
        return UNTRAINED

    def announce(self, origin: str) -> None:
        """Tell every result writer which checkpoint the coming stage's files describe."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, RunWriter):
                callback.origin = origin
