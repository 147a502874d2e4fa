"""``drgrade``: one LightningCLI for every verb.

One LightningCLI with the Lightning verbs (fit, validate, test, predict) and the project's own verbs as
subcommands of the same parser; each verb's body is in ``drgrade.commands``.

``main(args=None)`` is the single entry point used by the console script, ``python -m drgrade``
and the tests, so what the tests exercise is exactly what users run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from drgrade import __version__, commands
from drgrade.callbacks.checkpoint_io import AtomicCheckpointIO
from drgrade.console import quiet_console
from drgrade.data import DRDataModule
from drgrade.errors import CheckpointError, DataValidationError, OptionError, WeightsFileError
from drgrade.runs import resolve_checkpoint, run_dir
from drgrade.tasks import BaseTask, read_checkpoint
from drgrade.tasks.loading import WEIGHT_SOURCES, task_classes

#: Errors whose message already says what to do: shown without a traceback, exit code 2.
USER_ERRORS = (
    DataValidationError,
    WeightsFileError,
    OptionError,
    CheckpointError,
    FileNotFoundError,
    FileExistsError,
    ValueError,
)


class DRGradeCLI(LightningCLI):
    """LightningCLI with drgrade's verbs, run directories and checkpoint checks.

    Args:
        args: command-line arguments (default ``sys.argv[1:]``).
        run: run the subcommand (False: only parse and instantiate, for tools and tests).
        wandb_group: the W&B group of this run's W&B runs (``reproduce`` groups its stages).
        **kwargs: further LightningCLI options.
    """

    def __init__(
        self, args: list[str] | None = None, run: bool = True, wandb_group: str | None = None, **kwargs: Any
    ):
        self.wandb_group = wandb_group
        super().__init__(
            BaseTask,
            DRDataModule,
            subclass_mode_model=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=args,
            run=run,
            parser_kwargs={"prog": "drgrade", "version": __version__} if run else None,
            **kwargs,
        )

    # -- parser ---------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's image size into the model."""
        parser.link_arguments("data.image_size", "model.init_args.image_size")

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        for name, verb in commands.VERBS.items():
            description = (verb.__doc__ or "").strip().splitlines()[0]
            subparser = self.init_parser(description=description)
            if verb.MODEL_BOUND:
                self._add_arguments(subparser)
            verb.add_arguments(subparser)
            self._subcommand_parsers[name] = subparser
            parser._subcommands_action.add_subcommand(name, subparser, help=description)

    # -- before instantiation -------------------------------------------------------------------
    def _standalone(self, subcommand: str | None = None) -> bool:
        """Whether the verb (default: the running one) needs no model, data or trainer."""
        verb = commands.VERBS.get(subcommand or self.subcommand or "")
        return verb is not None and not verb.MODEL_BOUND

    def _set_seed(self) -> None:
        if not self._standalone():
            super()._set_seed()

    def _parse_ckpt_path(self) -> None:
        """Settle the run directory and check ``--ckpt_path`` before any data is read.

        ``last`` / ``best`` are resolved; a missing or unsafe checkpoint is refused.

        The model is what the config files and command line say; the checkpoint supplies its
        weights (and calibrated thresholds). Lightning's own step, which overwrites the parsed
        model options with the checkpoint's, is skipped so that an explicit option (e.g. another
        calibration method for ``validate``) is never silently replaced.
        """
        subcommand = self.config.get("subcommand")
        if subcommand is None or self._standalone(subcommand):
            return
        config = self.config[subcommand]
        root = self._settle_run_dir(config)
        self._name_wandb_runs(config, subcommand)
        entry = config.get("ckpt_path")
        if entry:
            config["ckpt_path"] = resolve_checkpoint(entry, root)
            read_checkpoint(config["ckpt_path"])
            # the checkpoint holds every weight: building the model reads no weights file first
            init_args = config["model"].get("init_args") or {}
            for name in WEIGHT_SOURCES:
                if name in init_args:
                    init_args[name] = None
        for member in (config["model"].get("init_args") or {}).get("checkpoints") or []:
            read_checkpoint(member)  # ensemble members: refused before any run folder exists

    @staticmethod
    def _settle_run_dir(config) -> str:
        """Return the run root, ``trainer.default_root_dir`` (default ``runs/<model>``).

        It is the one option for where a run's files go: every logger's ``save_dir`` follows it.
        """
        trainer = config["trainer"]
        if not trainer.get("default_root_dir"):
            name = str(config["model"]["class_path"]).rsplit(".", 1)[-1]
            task = task_classes().get(name)
            trainer["default_root_dir"] = str(Path("runs") / (task.run_name if task else name.lower()))
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else []:
            if "init_args" in logger and logger["init_args"] is not None:
                logger["init_args"]["save_dir"] = trainer["default_root_dir"]
        return trainer["default_root_dir"]

    def _name_wandb_runs(self, config, subcommand: str) -> None:
        """Give each W&B run its model and stage as name and the protocol's group (explicit options win)."""
        model = Path(config["trainer"]["default_root_dir"]).name
        loggers = config["trainer"].get("logger")
        for logger in loggers if isinstance(loggers, list) else []:
            if not str(logger.get("class_path", "")).endswith("WandbLogger"):
                continue
            options = logger["init_args"]
            options["name"] = options.get("name") or f"{model}-{subcommand}"
            options["group"] = options.get("group") or self.wandb_group

    # -- instantiation and running --------------------------------------------------------------
    def instantiate_classes(self) -> None:
        """Model, data and trainer, except for verbs that need none of them."""
        if self._standalone():
            self.model = self.datamodule = self.trainer = None
            return
        super().instantiate_classes()

    def instantiate_trainer(self, **kwargs: Any):
        """The configured trainer, saving checkpoints atomically unless plugins are configured."""
        if not self._get(self.config_init, "trainer", default={}).get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        trainer = super().instantiate_trainer(**kwargs)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # Lightning always passes ``anonymous`` (None) to wandb.init, which then warns that
                # the setting is deprecated on every run; leaving it out changes nothing else
                logger._wandb_init.pop("anonymous", None)
        return trainer

    def fit(self, model: BaseTask, datamodule: DRDataModule | None = None, **kwargs: Any) -> None:
        """``drgrade fit``: train, or make and save the validation choices of an untrained model.

        A model with nothing to train (zero-shot, ensemble) makes its validation-split choices
        (template set, calibrated thresholds) and saves them in a checkpoint.

        Every model thus follows one path: ``fit`` writes a checkpoint, ``test``, ``predict``,
        ``explain`` and ``export`` read it.

        Args:
            model: the task.
            datamodule: the data.
            **kwargs: ``trainer.fit`` options (``ckpt_path``).
        """
        if model.trainable:
            self.trainer.fit(model, datamodule=datamodule, **kwargs)
            return
        path = run_dir(self.trainer) / "checkpoints" / "best-validated.ckpt"
        model.fit_untrained(self.trainer, datamodule, path)
        print(f"{type(model).__name__}: validation choices saved to {path}")

    def _run_subcommand(self, subcommand: str) -> None:
        verb = commands.VERBS.get(subcommand)
        if verb is not None:
            verb.run(self)
            return
        self._attach_config(subcommand)
        try:
            super()._run_subcommand(subcommand)
        finally:
            self._finish_wandb()

    def _attach_config(self, subcommand: str) -> None:
        """The whole parsed configuration (as saved in the run's config.yaml) in each W&B run's config."""
        loggers = [logger for logger in self.trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            config = json.loads(json.dumps(self.config[subcommand].as_dict(), default=str))
            for logger in loggers:
                logger.experiment.config.update({"subcommand": subcommand, **config}, allow_val_change=True)

    def _finish_wandb(self) -> None:
        """Close this run's W&B runs, so its files are complete and the next stage (e.g.

        the test after a fit in ``reproduce``) starts a run of its own instead of appending to this
        one.
        """
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish()

    def options(self) -> Any:
        """The parsed options of the running verb.

        Its own options and, when model-bound, the instantiated model, data and trainer.
        """
        if self._standalone():
            return self.config[self.subcommand]
        return self.config_init[self.subcommand]


def main(argv: list[str] | None = None) -> None:
    """Run ``drgrade`` with ``argv`` (default: the process's arguments); user errors exit 2.

    Args:
        argv: command-line arguments without the program name.
    """
    quiet_console()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # LightningCLI reads sys.argv itself when args is None (and warns if given both)
        DRGradeCLI(None if argv is None else args)
    except USER_ERRORS as error:
        print(f"drgrade: error: {root_cause(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def root_cause(error: BaseException) -> BaseException:
    """Return the drgrade error behind ``error``.

    jsonargparse wraps a failing constructor's exception in its own "Does not validate" message, which
    would bury the actionable one.

    Args:
        error: the exception that reached ``main``.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, USER_ERRORS) and type(cause) is not ValueError:
            return cause
        cause = cause.__cause__ or cause.__context__
    return error
