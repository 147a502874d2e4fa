"""``DRGradeCLI``: Lightning's verbs, and the config files of drgrade's model-bound verbs.

A ``LightningCLI`` on its public extension points only (``parse_arguments``,
``add_arguments_to_parser``, ``before_instantiate_classes``, ``instantiate_trainer``,
``before_<verb>`` / ``after_<verb>``, and a ``fit`` method, which LightningCLI calls in place of
the trainer's). What it adds:

- the run directory: ``trainer.default_root_dir`` (default ``runs/<model>``) is the one option
  for where a run's files go; every logger's ``save_dir`` follows it;
- ``--ckpt_path last / best / newest`` resolved across earlier runs, and the checkpoint read
  (as data) and checked before any data is read; a checkpoint supplies weights and the fitted
  decision rule, never options (Lightning's own step that would merge its hyperparameters into
  the config never sees the path), and with a checkpoint no pretrained weights are loaded;
- checkpoints written atomically; W&B runs named by model and stage, grouped per protocol, with
  the whole configuration attached, and closed after each stage.

The one private Lightning name drgrade uses is listed in ``PRIVATE_NAMES`` with why; a test
checks that no other (LightningCLI's ``_add_subcommands``, ``_run_subcommand``, ...) comes back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from drgrade import __version__
from drgrade.callbacks.checkpoint_io import AtomicCheckpointIO
from drgrade.console import quiet_console
from drgrade.data import DRDataModule
from drgrade.data.splits import split_settings
from drgrade.files import file_sha256
from drgrade.runs import CHECKPOINT_CHOICES, resolve_checkpoint, run_dir
from drgrade.tasks import BaseTask, read_checkpoint
from drgrade.tasks.ensemble import MEMBERS_KEY, check_members, recorded_members
from drgrade.tasks.loading import WEIGHT_SOURCES, task_classes

#: Private Lightning names drgrade relies on, and why (an upgrade that changes one breaks only these).
PRIVATE_NAMES = {
    "WandbLogger._wandb_init": "drop the deprecated 'anonymous' argument Lightning gives every wandb.init",
}
#: Lightning's verbs.
SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: Parser settings: no prefix abbreviations (``--trainer.max_epoch`` is an error, not max_epochs),
#: and errors raised to ``drgrade.cli.main``, which answers with the closest valid names.
PARSER = {"allow_abbrev": False, "exit_on_error": False}


class DRGradeCLI(LightningCLI):
    """LightningCLI with drgrade's run directories, checkpoint handling and W&B runs.

    Args:
        args: command-line arguments (default ``sys.argv[1:]``).
        run: run the subcommand (False: only parse and instantiate, for model-bound verbs and tests).
        wandb_group: the W&B group of this run's W&B runs (``reproduce`` groups its stages).
        verb: a model-bound verb's module, whose options join the parser (``run`` False).
        **kwargs: further LightningCLI options.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        wandb_group: str | None = None,
        verb: ModuleType | None = None,
        **kwargs: Any,
    ):
        quiet_console()
        self.wandb_group = wandb_group
        self.verb = verb
        self.checkpoint_entry: str | None = None
        parser_kwargs = {**PARSER, **{name: dict(PARSER) for name in SUBCOMMANDS}}
        if run:
            parser_kwargs |= {"prog": "drgrade", "version": __version__}
        super().__init__(
            BaseTask,
            DRDataModule,
            subclass_mode_model=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            load_from_checkpoint_support=False,  # checkpoints are rebuilt by load_task, not from classes
            args=args,
            run=run,
            parser_kwargs=parser_kwargs,
            **kwargs,
        )

    # -- parsing ----------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's image size into the model; a model-bound verb adds its own options."""
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        if self.verb is not None:
            self.verb.add_arguments(parser)

    def section(self, config: Any = None) -> Any:
        """The running verb's part of a (parsed or instantiated) config."""
        config = self.config if config is None else config
        subcommand = self.config.get("subcommand")
        return config[subcommand] if subcommand else config

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then keep ``--ckpt_path`` aside until the run directory is settled.

        A checkpoint supplies weights, never options: with the path hidden, Lightning does not
        merge the checkpoint's hyperparameters into the parsed config.
        """
        super().parse_arguments(parser, args)
        section = self.section()
        self.checkpoint_entry = section.get("ckpt_path")
        if self.checkpoint_entry and self.config.get("subcommand"):
            section["ckpt_path"] = None

    def before_instantiate_classes(self) -> None:
        """Settle the run directory and W&B names; resolve and check checkpoints before any data is read."""
        config = self.section()
        root = settle_run_dir(config)
        name_wandb_runs(config, self.config.get("subcommand") or "run", self.wandb_group)
        init_args = config["model"].get("init_args") or {}
        if self.checkpoint_entry:
            data = config["data"]
            split = split_settings(
                data["split_ratios"],
                data["split_seed"],
                data["test_sources"] or (),
                data["split"] == "official",
            )
            path = resolve_checkpoint(self.checkpoint_entry, root, split)
            checkpoint = read_checkpoint(path)
            config["ckpt_path"] = path
            for name in WEIGHT_SOURCES:  # the checkpoint holds every weight
                if name in init_args:
                    init_args[name] = None
            if MEMBERS_KEY in checkpoint:  # an ensemble: its members default to those it recorded
                init_args["checkpoints"] = init_args.get("checkpoints") or recorded_members(checkpoint, path)
        members = (init_args.get("checkpoints") or []) if self.config.get("subcommand") else []
        for member in members:
            read_checkpoint(member)  # ensemble members: refused before any run folder exists
        if self.checkpoint_entry and MEMBERS_KEY in checkpoint:
            check_members(checkpoint, members, [file_sha256(m) for m in members], str(path))
        if "weights_only" in config:
            config["weights_only"] = True  # Lightning's own restore of --ckpt_path loads tensors only too

    # -- instantiation and running --------------------------------------------------------------
    def instantiate_trainer(self, **kwargs: Any):
        """The configured trainer, saving checkpoints atomically unless plugins are configured."""
        if not self.section(self.config_init)["trainer"].get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        trainer = super().instantiate_trainer(**kwargs)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # PRIVATE_NAMES: Lightning always passes ``anonymous`` (None) to wandb.init, which then
                # warns on every run that the setting is deprecated; leaving it out changes nothing else
                logger._wandb_init.pop("anonymous", None)
        return trainer

    def fit(self, model: BaseTask, datamodule: DRDataModule | None = None, **kwargs: Any) -> None:
        """``drgrade fit``: train, or make and save the validation choices of an untrained model.

        A model with nothing to train (zero-shot, ensemble) makes its validation-split choices
        (template set, decision rule) and saves them in a checkpoint, so every model follows one
        path: ``fit`` writes a checkpoint, ``test``, ``predict``, ``explain`` and ``export`` read it.

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

    def attach_config(self) -> None:
        """The whole parsed configuration (as saved in the run's config.yaml) in each W&B run's config."""
        loggers = [logger for logger in self.trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            subcommand = self.config["subcommand"]
            config = json.loads(json.dumps(self.config[subcommand].as_dict(), default=str))
            for logger in loggers:
                logger.experiment.config.update({"subcommand": subcommand, **config}, allow_val_change=True)

    def finish_wandb(self) -> None:
        """Close this stage's W&B run, so its files are complete and the next stage starts its own."""
        close_wandb()

    before_fit = before_validate = before_test = before_predict = attach_config
    after_fit = after_validate = after_test = after_predict = finish_wandb


def settle_run_dir(config: Any) -> str:
    """Return the run root, ``trainer.default_root_dir`` (default ``runs/<model>``); loggers follow it."""
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


def name_wandb_runs(config: Any, stage: str, group: str | None) -> None:
    """Give each W&B run its model and stage as name and the protocol's group (explicit options win)."""
    model = Path(config["trainer"]["default_root_dir"]).name
    loggers = config["trainer"].get("logger")
    for logger in loggers if isinstance(loggers, list) else []:
        if str(logger.get("class_path", "")).endswith("WandbLogger"):
            options = logger["init_args"]
            options["name"] = options.get("name") or f"{model}-{stage}"
            options["group"] = options.get("group") or group


def run_lightning(verb: str, args: list[str]) -> None:
    """``drgrade fit|validate|test|predict ARGS``; a W&B run a failed stage left open is closed too."""
    try:
        DRGradeCLI([verb, *args])
    finally:
        close_wandb()


def close_wandb() -> None:
    """Finish the W&B run in progress, if W&B is in use and one is."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def run_model_bound(module: ModuleType, args: list[str]) -> None:
    """A model-bound verb: parse its config files and options, instantiate, then ``module.run(cli)``."""
    module.run(DRGradeCLI(args, run=False, verb=module))


__all__ = ["CHECKPOINT_CHOICES", "DRGradeCLI", "run_lightning", "run_model_bound"]
