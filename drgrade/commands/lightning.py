"""``DRGradeCLI``: Lightning's verbs, and the config files of drgrade's model-bound verbs.

A thin ``LightningCLI``: it parses the config files and options, builds the task, the data
and the trainer, and hands each stage to ``drgrade.engine.Engine`` through the subcommand
methods (``fit``, ``validate``, ``test``, ``predict``), which LightningCLI calls in place of the
trainer's. Only public extension points are used (``parse_arguments``,
``add_arguments_to_parser``, ``before_instantiate_classes``, ``instantiate_trainer``,
``before_<verb>`` / ``after_<verb>``). What it adds at parse time:

- the run directory: ``trainer.default_root_dir`` (default ``runs/<model>``) is the one option
  for where a run's files go; every logger's ``save_dir`` follows it;
- ``--ckpt_path last / best / newest`` resolved across earlier runs, and the checkpoint read
  (as data) and checked before any data is read; the model is then rebuilt from the options the
  checkpoint recorded, image size included (``checkpoint_policy``: one policy for every verb,
  applied here rather than by Lightning's own merge of hyperparameters, which never sees the
  path), a contradicting command-line option is refused, and no pretrained weights are loaded;
- ``test`` / ``validate`` / ``predict`` of a trainable model without a checkpoint refused before
  any data is read, unless ``--allow_untrained`` asks for the untrained baseline;
- W&B runs named by model and stage, grouped per protocol, with the whole configuration
  attached, and closed after each stage.

A test checks that no private Lightning name but those of ``drgrade.engine.PRIVATE_NAMES``
(LightningCLI's ``_add_subcommands``, ``_run_subcommand``, ...) is used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from drgrade import __version__
from drgrade.callbacks.resume import join_curves
from drgrade.commands import VERBS
from drgrade.commands.checkpoint_policy import (
    ALLOW_UNTRAINED,
    adopt_checkpoint,
    refuse_untrained,
    typed_options,
)
from drgrade.commands.options import add_switch
from drgrade.commands.preflight import preflight
from drgrade.console import quiet_console
from drgrade.data import DRDataModule
from drgrade.data.datamodule import check_roots
from drgrade.data.sources import SOURCES
from drgrade.data.splits import split_settings
from drgrade.engine import Engine
from drgrade.files import atomic_write_text, check_writable, file_sha256
from drgrade.runs import CHECKPOINT_CHOICES, resolve_checkpoint, run_dir
from drgrade.tasks import BaseTask, read_checkpoint
from drgrade.tasks.base import LOGGED
from drgrade.tasks.ensemble import MEMBERS_KEY, check_members, recorded_members
from drgrade.tasks.loading import task_classes
from drgrade.tasks.quality import QualityModel

#: Lightning's verbs.
SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: Parser settings: no prefix abbreviations (``--trainer.max_epoch`` is an error, not max_epochs),
#: and errors raised to ``drgrade.cli.main``, which answers with the closest valid names.
PARSER = {"allow_abbrev": False, "exit_on_error": False}


class VerbParser(LightningArgumentParser):
    """Lightning's parser, its subcommands named as drgrade runs them (``drgrade fit``).

    jsonargparse names a subcommand's parser ``drgrade [options] fit``; drgrade takes no option
    before the verb, so its usage line would show a command that does not run.

    Args:
        verb: the Lightning verb this parser reads (None: the main parser or a model-bound verb's),
            so that a verb's own options join its parser only (``predict --out``).
        *args: the parser's arguments.
        **kwargs: the parser's options.
    """

    def __init__(self, *args: Any, verb: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verb = verb

    @property
    def prog(self) -> str:
        """The program name the usage line and messages show."""
        return self._prog

    @prog.setter
    def prog(self, value: str) -> None:
        self._prog = value.replace(" [options]", "")


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
        self.typed = typed_options(sys.argv[1:] if args is None else args)
        self.wandb_group = wandb_group
        self.verb = verb
        self.checkpoint_entry: str | None = None
        #: The data options the checkpoint was fitted with (named when the configured data is missing).
        self.checkpoint_data: dict | None = None
        #: The checkpoint a ``fit`` left to use next (None: not a fit, or none kept).
        self.fitted: Path | None = None
        #: ``predict --out``: a copy of the predictions where the user asked (checked writable).
        self.predictions_out: Path | None = None
        described = {
            name: PARSER | {"description": VERBS[name].summary, "verb": name} for name in SUBCOMMANDS
        }
        parser_kwargs = {**PARSER, **described}
        if run:
            parser_kwargs |= {"prog": "drgrade", "version": __version__}
        elif verb is not None:  # a model-bound verb's help names it, not python's __main__.py or Lightning
            name = verb.__name__.rsplit(".", 1)[-1]
            parser_kwargs |= {"prog": f"drgrade {name}", "description": VERBS[name].summary}
        super().__init__(
            BaseTask,
            DRDataModule,
            subclass_mode_model=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            load_from_checkpoint_support=False,  # checkpoints are rebuilt by load_task, not from classes
            parser_class=VerbParser,
            args=args,
            run=run,
            parser_kwargs=parser_kwargs,
            **kwargs,
        )

    # -- parsing ----------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the data's image size into the model and the model's normalisation into the data.

        A model-bound verb adds its own options; the Lightning verbs ``--allow_untrained``, and
        ``predict`` its ``--out``.
        """
        parser.link_arguments("data.image_size", "model.init_args.image_size")
        # the data normalises images with the model's backbone constants (FLAIR's differ from CLIP's)
        parser.link_arguments(
            "model", "data.normalisation", compute_fn=model_normalisation, apply_on="instantiate"
        )
        if self.verb is not None:
            self.verb.add_arguments(parser)
        else:
            add_switch(
                parser,
                ALLOW_UNTRAINED,
                "validate/test/predict: run a trainable model without a checkpoint (the untrained "
                "baseline, labelled as such in metrics.json, predictions and the report)",
            )
        if parser.verb == "predict":
            parser.add_argument(
                "--out",
                type=Path | None,
                default=None,
                help="also write predictions.csv to this file (the run folder keeps its own); never a "
                "file the run reads",
            )

    def section(self, config: Any = None) -> Any:
        """The running verb's part of a (parsed or instantiated) config."""
        config = self.config if config is None else config
        subcommand = self.config.get("subcommand")
        return config[subcommand] if subcommand else config

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then keep ``--ckpt_path`` aside until the run directory is settled.

        With the path hidden, Lightning does not merge the checkpoint's hyperparameters into the
        parsed config: ``adopt_checkpoint`` does, checking the command line against them.
        """
        super().parse_arguments(parser, args)
        section = self.section()
        # a model-bound verb may name the checkpoint that configures the model otherwise (explain --compare)
        configuring = getattr(self.verb, "configuring_checkpoint", None)
        self.checkpoint_entry = configuring(section) if configuring else section.get("ckpt_path")
        if self.checkpoint_entry and self.config.get("subcommand"):
            section["ckpt_path"] = None

    def before_instantiate_classes(self) -> None:
        """Settle the run directory and W&B names; resolve and check checkpoints before any data is read."""
        config = self.section()
        check_roots(config["data"].get("roots"))  # a misspelt source name before anything it hides
        root = settle_run_dir(config)
        drop_disabled_wandb(config)
        name_wandb_runs(config, self.config.get("subcommand") or "run", self.wandb_group)
        init_args = config["model"].get("init_args") or {}
        if self.checkpoint_entry:
            data = config["data"]
            split = split_settings(
                data["split_ratios"],
                data["split_seed"],
                data["test_sources"] or (),
                data["split"] == "official",
                data.get("split_file"),
            )
            path = resolve_checkpoint(self.checkpoint_entry, root, split)
            checkpoint = read_checkpoint(path)
            self.checkpoint_data = checkpoint.get("datamodule_hyper_parameters")
            config["ckpt_path"] = path
            adopt_checkpoint(config, checkpoint, path, self.typed)
            if MEMBERS_KEY in checkpoint:  # an ensemble: its members default to those it recorded
                init_args["checkpoints"] = init_args.get("checkpoints") or recorded_members(checkpoint, path)
        elif self.config.get("subcommand") in ("validate", "test", "predict"):
            refuse_untrained(
                config["model"]["class_path"], self.config["subcommand"], root, config["allow_untrained"]
            )
        members = (init_args.get("checkpoints") or []) if self.config.get("subcommand") else []
        for member in members:
            read_checkpoint(member)  # ensemble members: refused before any run folder exists
        if self.checkpoint_entry and MEMBERS_KEY in checkpoint:
            check_members(checkpoint, members, [file_sha256(m) for m in members], str(path))
        if self.config.get("subcommand") == "predict":
            self.predictions_out = predictions_copy(config)
        if "weights_only" in config:
            config["weights_only"] = True  # Lightning's own restore of --ckpt_path loads tensors only too
        if "verbose" in config and "verbose" not in self.typed:
            config["verbose"] = False  # its table prints float32 noise (0.0799999982): see stage_ending
        if self.config.get("subcommand"):
            preflight(config, self.config["subcommand"], self.checkpoint_data)

    # -- instantiation and running --------------------------------------------------------------
    def instantiate_trainer(self, **kwargs: Any):
        """The configured trainer with the engine's defaults; the engine that runs every stage with it."""
        kwargs |= Engine.trainer_defaults(self.section(self.config_init)["trainer"])
        self.engine = Engine(super().instantiate_trainer(**kwargs))
        return self.engine.trainer

    # LightningCLI calls a subcommand's method of the CLI, when it has one, in place of the trainer's
    def fit(self, model: BaseTask, datamodule: DRDataModule, **kwargs: Any) -> None:
        """``drgrade fit``: ``Engine.fit`` (Lightning's ``fit`` options as parsed); keeps its checkpoint."""
        self.fitted = self.engine.fit(model, datamodule, **without_loaders(kwargs))

    def validate(self, model: BaseTask, datamodule: DRDataModule, **kwargs: Any) -> None:
        """``drgrade validate``: ``Engine.validate``."""
        self.engine.validate(model, datamodule, allow_untrained=self.untrained(), **without_loaders(kwargs))

    def test(self, model: BaseTask, datamodule: DRDataModule, **kwargs: Any) -> None:
        """``drgrade test``: ``Engine.test``."""
        self.engine.test(model, datamodule, allow_untrained=self.untrained(), **without_loaders(kwargs))

    def predict(self, model: BaseTask, datamodule: DRDataModule, **kwargs: Any) -> None:
        """``drgrade predict``: ``Engine.predict`` (``--out``: a copy of the predictions)."""
        options = without_loaders(kwargs)
        self.engine.predict(
            model, datamodule, allow_untrained=self.untrained(), out=self.predictions_out, **options
        )

    def untrained(self) -> bool:
        """``--allow_untrained`` was given."""
        return bool(self.section().get("allow_untrained"))

    def before_stage(self) -> None:
        """Put the learned quality gate beside the rule gate; attach the config to W&B."""
        subcommand = self.config["subcommand"]
        if self.datamodule.hparams.quality_model:  # the learned gate beside the rule gate
            self.datamodule.quality_gate_model = QualityModel(self.datamodule.hparams.quality_model)
        loggers = [logger for logger in self.trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            config = json.loads(json.dumps(self.config[subcommand].as_dict(), default=str))
            for logger in loggers:
                logger.experiment.config.update({"subcommand": subcommand, **config}, allow_val_change=True)

    def after_stage(self) -> None:
        """Link the run folder and its W&B run both ways, close the W&B run, say where things went."""
        loggers = [logger for logger in self.trainer.loggers if isinstance(logger, WandbLogger)]
        folder = run_dir(self.trainer)  # a collective under DDP: every rank asks
        if loggers and self.trainer.is_global_zero:
            link_wandb_runs([logger.experiment for logger in loggers], folder)
        close_wandb()
        if self.trainer.is_global_zero:
            print(stage_ending(self.config["subcommand"], folder, self.trainer))

    def after_fit(self) -> None:
        """A resumed fit's training curves continue those of the run it resumed; then as every stage."""
        folder = run_dir(self.trainer)  # a collective under DDP: every rank asks
        resumed_from = self.config["fit"].get("ckpt_path")
        if resumed_from and self.trainer.is_global_zero:
            join_curves(Path(resumed_from), folder)
        self.after_stage()

    before_fit = before_validate = before_test = before_predict = before_stage
    after_validate = after_test = after_predict = after_stage


def predictions_copy(config: Any) -> Path | None:
    """``predict --out``, checked: writable, and never one of the files the run reads."""
    out = config.get("out")
    if out is None:
        return None
    data = config["data"]
    sources = [source.configured_root(data) for source in SOURCES.values()]
    inputs = [config.get("ckpt_path"), data.get("predict_dir"), data.get("exam_manifest"), *sources]
    return check_writable(out, inputs)


def stage_ending(stage: str, folder: Path, trainer) -> str:
    """The last lines of a stage: the run folder it wrote, and what to read or use next.

    A validate/test run shows its headline figures to three decimals (those of metrics.json);
    ``fit`` names the checkpoint to use next.
    """
    text = f"drgrade {stage}: run folder {folder}"
    result = trainer.lightning_module.results.get("test" if stage == "test" else "val")
    if stage in ("validate", "test") and result is not None:
        shown = {name: result.evaluation.metrics[name] for name in LOGGED}
        text += "\n" + "  ".join(f"{n} {'-' if v is None else f'{v:.3f}'}" for n, v in shown.items())
        text += f"\ntables and figures beside other runs: drgrade report {folder} ... --out reports/NAME"
    if stage != "fit":
        return text
    callback = trainer.checkpoint_callback
    best = (callback.best_model_path if callback else "") or folder / "checkpoints" / "best-validated.ckpt"
    return (
        f"{text}\ncheckpoint to use next: {best} (test, predict, export, explain and serve take it as "
        "--ckpt_path; --ckpt_path best finds the best of this config's runs)"
    )


def without_loaders(kwargs: dict) -> dict:
    """Lightning's stage options less the data loaders (drgrade's data comes from the data module)."""
    return {k: v for k, v in kwargs.items() if not k.endswith("dataloaders")}


def model_normalisation(model: BaseTask) -> tuple:
    """The model's input normalisation, for the data's transforms."""
    return tuple(tuple(float(v) for v in part) for part in model.normalisation())


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


def drop_disabled_wandb(config: Any) -> None:
    """``WANDB_MODE=disabled`` turns W&B off entirely: the configured W&B loggers are left out.

    The shipped configs ask for ``offline: true``, which wandb honours over the environment, so
    without this an offline run would still be written under the run folder.
    """
    if os.environ.get("WANDB_MODE", "").lower() != "disabled":
        return
    loggers = config["trainer"].get("logger")
    if isinstance(loggers, list):
        config["trainer"]["logger"] = [
            logger for logger in loggers if not str(logger.get("class_path", "")).endswith("WandbLogger")
        ]


def name_wandb_runs(config: Any, stage: str, group: str | None) -> None:
    """Name, tag and group each W&B run (explicit options win).

    The name is ``<model>-<stage>-v<N>``, after the run folder ``version_N`` it writes; the job
    type is the stage; the tags are the model, the stage, the sources and the backbone.
    """
    root = Path(config["trainer"]["default_root_dir"])
    model = root.name
    versions = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
    version = max(versions, default=-1) + 1  # the folder the CSV logger is about to make
    data, init_args = config["data"], config["model"].get("init_args") or {}
    sources = [name for name, source in SOURCES.items() if source.configured_root(data)]
    tags = [model, stage, *sources, *([str(init_args["backbone"])] if init_args.get("backbone") else [])]
    loggers = config["trainer"].get("logger")
    for logger in loggers if isinstance(loggers, list) else []:
        if str(logger.get("class_path", "")).endswith("WandbLogger"):
            options = logger["init_args"]
            options["name"] = options.get("name") or f"{model}-{stage}-v{version}"
            options["group"] = options.get("group") or group
            options["job_type"] = options.get("job_type") or stage
            options["tags"] = options.get("tags") or tags


def run_lightning(verb: str, args: list[str]) -> None:
    """``drgrade fit|validate|test|predict ARGS``; a W&B run a failed stage left open is closed too."""
    try:
        DRGradeCLI([verb, *args])
    except BaseException:
        discard_empty_wandb_run()
        raise
    finally:
        close_wandb()


def link_wandb_runs(runs: list, folder: Path) -> None:
    """Link a run folder and its W&B runs both ways; offline runs print how to upload them.

    The folder goes in each W&B run's config; each W&B run (with its ``wandb sync`` line) goes in
    ``wandb.txt`` in the folder.

    Args:
        runs: the stage's W&B runs.
        folder: the run folder.
    """
    lines = []
    for run in runs:
        run.config.update({"run_dir": str(folder.resolve())}, allow_val_change=True)
        if run.disabled:
            continue
        where = Path(run.settings.sync_dir).resolve()
        lines.append(f"{run.name} ({run.id}): {where}")
        if run.offline:
            lines.append(f"  upload: wandb sync {where}")
            print(f"W&B run {run.name} is offline; upload it with: wandb sync {where}")
    if lines:
        atomic_write_text(folder / "wandb.txt", "\n".join(lines) + "\n")


def discard_empty_wandb_run() -> None:
    """A stage that failed before logging anything leaves no W&B run behind (nothing to sync).

    Lightning starts the W&B run before the data is set up, so a bad dataset sheet would
    otherwise leave an empty offline run per attempt.
    """
    wandb = sys.modules.get("wandb")
    run = None if wandb is None else wandb.run
    if run is None or run.disabled or run.step > 0 or dict(run.summary):
        return
    folder = Path(run.settings.sync_dir)
    wandb.finish(exit_code=1)
    wandb.teardown()  # the W&B service writes the run's files until it stops
    shutil.rmtree(folder, ignore_errors=True)
    for link in folder.parent.iterdir():  # latest-run, debug.log: links into the removed folder
        if link.is_symlink() and not link.exists():
            link.unlink()
    if not any(folder.parent.iterdir()):
        folder.parent.rmdir()


def close_wandb() -> None:
    """Finish the W&B run in progress, if W&B is in use and one is."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def option_names() -> list[str]:
    """Every option ``DRGradeCLI``'s verbs take, for any model: the one list typos are matched against.

    ``--model.init_args.*`` is the union over the task classes (``drgrade fit`` suggests from it
    whatever the model; ``reproduce`` checks the options it hands on against it).
    """
    import inspect

    from lightning import Trainer

    from drgrade.tasks.loading import accepted_options

    names = ["--config", "--print_config", "--seed_everything", "--ckpt_path", "--model.class_path"]
    names += [f"--data.{p}" for p in inspect.signature(DRDataModule).parameters]
    names += [f"--data.{source.option}" for source in SOURCES.values()]  # --data.roots.aptos2019
    names += [f"--trainer.{p}" for p in inspect.signature(Trainer).parameters]
    for task in task_classes().values():
        names += [f"--model.init_args.{p}" for p in accepted_options(task)]
    return sorted(set(names))


def subcommand_options(verb: str) -> list[str]:
    """What a Lightning verb takes beyond ``option_names()``.

    Its trainer method's own options (``--verbose``, ``--return_predictions``, ...),
    ``--allow_untrained``, and ``predict``'s ``--out``.
    """
    import inspect

    from lightning import Trainer

    skipped = {"self", *LightningCLI.subcommands()[verb]}
    names = [f"--{p}" for p in inspect.signature(getattr(Trainer, verb)).parameters if p not in skipped]
    own = ["--out"] if verb == "predict" else []
    return [*names, ALLOW_UNTRAINED, ALLOW_UNTRAINED.replace("--", "--no_"), *own]


def run_model_bound(module: ModuleType, args: list[str]) -> None:
    """A model-bound verb: parse its config files and options, instantiate, then ``module.run(cli)``."""
    module.run(DRGradeCLI(args, run=False, verb=module))


__all__ = [
    "CHECKPOINT_CHOICES",
    "DRGradeCLI",
    "option_names",
    "run_lightning",
    "run_model_bound",
    "subcommand_options",
]
