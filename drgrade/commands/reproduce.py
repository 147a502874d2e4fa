"""Run a protocol file: the paper's (``paper.yaml``) unless ``--protocol NAME|FILE`` names another.

``paper.yaml`` fits then tests every model, then their ensemble, and writes the report.

``make demo`` runs the paper's on synthetic data (``--demo``), ``make reproduce-table3`` on the
real downloads (``--data``). Each stage is an ordinary ``fit`` or ``test`` run folder, run by
``DRGradeCLI`` through the engine with the model's config, then the stage options
(``stage_options``): the data's, the protocol's overlays, and those typed on the command line.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

from drgrade import CONFIGS
from drgrade.commands.lightning import DRGradeCLI, option_names
from drgrade.commands.options import PAPER_HELP, add_switch
from drgrade.commands.stage_options import StageOptions, read_config, split_command_line
from drgrade.data.sources import SOURCES, download_help, downloaded
from drgrade.errors import OptionError
from drgrade.protocols.spec import ADAPTATION_MODELS, Protocol, config_of, load_protocol, shipped_protocols
from drgrade.reporting.report import write_report
from drgrade.suggest import did_you_mean
from drgrade.tasks.loading import accepted_options, task_classes


def run_stages(cli_class, stages: list[str], model_args: list[str], run_dirs: list[str]) -> str:
    """``fit``, then (``test`` in ``stages``) ``test`` of the checkpoint it wrote; returns the checkpoint.

    Args:
        cli_class: the CLI class each stage runs through (its ``fit`` and ``test`` call the engine).
        stages: the protocol's stages.
        model_args: the model's config arguments.
        run_dirs: the test run folders so far (the test's is appended).
    """
    best = cli_class(["fit", *model_args]).fitted
    if best is None:
        raise OptionError("fit kept no checkpoint: the trainer's callbacks need a ModelCheckpoint")
    if "test" in stages:
        test = cli_class(["test", *model_args, "--ckpt_path", str(best)])
        run_dirs.append(test.trainer.log_dir)
    return str(best)


def real_data_options(data: Path) -> StageOptions:
    """``--data.roots.<source>`` for every source downloaded under ``data`` (null for the others)."""
    found = downloaded(data)
    if not found:
        raise OptionError(download_help(data))
    return StageOptions.of(
        (f"--data.{s.option}", str(found[n]) if n in found else "null") for n, s in SOURCES.items()
    )


def handed_on(args: list[str]) -> tuple[list[str], StageOptions]:
    """Split ``args`` into reproduce's own options and the stage options, checked before anything runs.

    Args:
        args: the command line after ``reproduce``.
    """
    own, handed = split_command_line(args)
    handed.check(option_names())
    return own, handed


def accepted_by(config: Path) -> set[str]:
    """The model options the model of ``config`` takes (one of drgrade's tasks, or refused)."""
    model = read_config(str(config)).get("model")
    class_path = str(model.get("class_path") or "") if isinstance(model, dict) else ""
    tasks = task_classes()
    ours = "." not in class_path or class_path.startswith("drgrade.")
    task = tasks.get(class_path.rsplit(".", 1)[-1]) if ours else None
    if task is None:
        raise OptionError(
            f"{config}: its model.class_path {class_path or '(none)'} is not one of drgrade's models "
            f"({', '.join(tasks)}); a model config names one"
        )
    return accepted_options(task)


def model_arguments(config: Path, options: StageOptions) -> list[str]:
    """A model's stage arguments: its config file, then ``options`` (those it takes)."""
    return ["--config", str(config), *options.arguments(accepted_by(config))]


def models_run(protocol: Protocol, configs: Path) -> dict[str, Path]:
    """The config of every image model a protocol runs.

    Its own, the ensemble's, and for the designs other than ``paper`` the zero-shot model's, whose
    backbone embeds the images for the adaptation models.
    """
    names = [m for m in protocol.models if m not in ADAPTATION_MODELS]
    names += ["ensemble"] if protocol.ensemble else []
    names += ["zero_shot"] if protocol.design != "paper" else []
    return {name: config_of(protocol, name, configs) for name in dict.fromkeys(names)}


def add_arguments(parser) -> None:
    """``--data`` or ``--demo``, the configs folder, ``--out``, ``--paper``; the stage options in the epilog.

    Args:
        parser: the verb's parser.
    """
    parser.epilog = (
        "Every --config, --seed_everything, --model.*, --data.* and --trainer.* option (drgrade fit --help "
        "lists them) is handed to every stage after the model's config and the data's; each model takes "
        "the model options it has."
    )
    parser.add_argument(
        "--data", type=Path | None, default=None, help="folder holding aptos2019/ and/or messidor2/"
    )
    add_switch(parser, "--demo", "synthetic data with configs/demo.yaml")
    parser.add_argument(
        "--configs",
        type=Path | None,
        default=CONFIGS,
        help="the folder of model configs (default: the shipped ones)",
    )
    parser.add_argument(
        "--out", type=Path | None, default=None, help="report folder (default reports/<demo|paper>)"
    )
    add_switch(parser, "--paper", PAPER_HELP)
    parser.add_argument(
        "--external",
        type=str | None,
        default=None,
        help="external validation: train and validate on the other sources, test on this one "
        "(e.g. messidor2); runs go under runs/external-<source>/",
    )
    parser.add_argument(
        "--protocol",
        type=str | None,
        default=None,
        help="the protocol file (default: paper, the paper's models, stages and ensemble): a path, or a "
        f"shipped one: {', '.join(shipped_protocols())}; report in reports/<its name>",
    )


def run(opts, handed: StageOptions) -> None:
    """Run the protocol file (the paper's unless ``--protocol`` names another), then print the report.

    Args:
        opts: the parsed options.
        handed: the stage options typed on the command line, from ``handed_on``.
    """
    if opts.demo == (opts.data is not None):
        raise OptionError("reproduce needs exactly one of --data DIR or --demo")
    if opts.external is not None and opts.external not in SOURCES:
        hint = did_you_mean(opts.external, SOURCES, otherwise=f"; the sources are {', '.join(SOURCES)}")
        raise OptionError(f"--external {opts.external}: no data source is called that{hint}")
    data = None if opts.demo else opts.data
    opts.configs = opts.configs or CONFIGS
    if not opts.configs.is_dir():
        raise OptionError(
            f"--configs {opts.configs}: not a folder of model configs (a config file for every stage is "
            "given with --config)"
        )
    protocol = load_protocol(opts.protocol or "paper", opts.configs)
    overlays = StageOptions.configs(protocol.overlays)
    overlays.check(option_names())  # the command line's were checked by handed_on
    users = overlays + handed
    users.check_taken(
        {name: accepted_by(config) for name, config in models_run(protocol, opts.configs).items()}
    )
    # every stage's options: the data's, the protocol's overlays, then the command line's
    options = data_options(data, opts.configs) + users
    if protocol.design != "paper":
        run_protocol_file(opts, protocol, data, options)
        return
    name = protocol.name if opts.protocol else ("demo" if opts.demo else "paper")
    name += f"-external-{opts.external}" if opts.external else ""
    out = opts.out or Path("reports") / name
    replacing = (out / "report.md").exists()
    report = reproduce(DRGradeCLI, protocol, data, opts.configs, out, opts.paper, opts.external, options)
    if report is not None:
        print(report)
        print(written(out, replacing))


def run_protocol_file(opts, protocol: Protocol, data: Path | None, options: StageOptions) -> None:
    """A seeds x folds, leave-one-source-out or few-shot protocol on the demo or real data; its report."""
    from drgrade.protocols import run_protocol

    if opts.external:
        raise OptionError(f"--external is for design: paper; protocol {protocol.name} plans its own splits")
    out = opts.out or Path("reports") / protocol.name
    replacing = (out / "report.md").exists()

    def stage_args(model: str) -> list[str]:
        return model_arguments(config_of(protocol, model, opts.configs), options)

    fit_then_test = partial(run_stages, DRGradeCLI, ["fit", "test"])
    print(run_protocol(DRGradeCLI, protocol, out, stage_args, fit_then_test, synthetic=data is None))
    print(written(out, replacing))


def written(out: Path, replacing: bool) -> str:
    """Where the report went, and whether it replaced an earlier one (the runs themselves are kept)."""
    replaced = " (in place of the report there before; the earlier runs are kept)" if replacing else ""
    return f"report written to {out}/{replaced}"


def data_options(data: Path | None, configs: Path) -> StageOptions:
    """The data's stage options: the demo's overlays, or the sources downloaded under ``data``.

    The demo's second overlay holds training settings: the models that do not train take none
    of them.
    """
    if data is None:
        return StageOptions.configs([configs / "demo.yaml", configs / "demo_train.yaml"])
    return real_data_options(data)


def external_options(source: str | None, model: str) -> StageOptions:
    """The options of an external-validation stage: the held-out source and a separate run folder.

    Args:
        source: the test source, or None for the usual grouped split.
        model: the model's run name.
    """
    if source is None:
        return StageOptions()
    return StageOptions.of(
        [("--data.test_sources", [source]), ("--trainer.default_root_dir", f"runs/external-{source}/{model}")]
    )


def ensemble_options(members: list[str], handed: StageOptions, external: str | None) -> StageOptions:
    """The ensemble's stage options: ``handed``, then the members' own data, then the members.

    The ensemble reads the same data as its members whatever ``handed`` says: the last member's
    fit saved its data section, given here as an inline config.

    Args:
        members: the member checkpoints.
        handed: the stage options every stage gets.
        external: the held-out test source, or None.
    """
    saved = read_config(str(Path(members[-1]).parents[1] / "config.yaml"))
    own = [("--config", {"data": saved["data"]}), ("--model.init_args.checkpoints", members)]
    return handed + StageOptions.of(own) + external_options(external, "ensemble")


def reproduce(
    cli_class,
    protocol: Protocol,
    data: Path | None,
    configs: Path,
    out: Path,
    with_paper: bool,
    external: str | None = None,
    options: StageOptions | None = None,
) -> str | None:
    """Run a ``paper`` protocol; ``data`` None means the synthetic demo.

    Returns the report's Markdown (None when the protocol's stages end with ``fit``).

    Args:
        cli_class: the CLI class each stage runs through.
        protocol: the protocol (``design: paper``): its models, stages and ensemble.
        data: the real-data folder, or None for the demo.
        configs: the folder of model configs.
        out: the report folder.
        with_paper: add the paper's numbers to the tables.
        external: test on this source only, train and validate on the others.
        options: every stage's options after its config (``data_options``, overlays, the command
            line's); each model takes those it has.
    """
    # every stage's W&B run in one group per invocation, so a dashboard shows the protocol together
    cli_class = partial(cli_class, wandb_group=f"reproduce-{datetime.now():%Y%m%d-%H%M%S}")
    stages = partial(run_stages, cli_class, protocol.stages)
    options = options or StageOptions()
    run_dirs: list[str] = []
    best: dict[str, str] = {}
    for model in protocol.models:
        own = options + external_options(external, model)
        best[model] = stages(model_arguments(config_of(protocol, model, configs), own), run_dirs)
    if protocol.ensemble:
        members = [best[model] for model in protocol.ensemble]
        ensemble = ensemble_options(members, options, external)
        stages(model_arguments(configs / "ensemble.yaml", ensemble), run_dirs)
    if "test" not in protocol.stages:
        for model, checkpoint in best.items():
            print(f"{model}: {checkpoint}")
        return None
    return write_report(run_dirs, out, with_paper=with_paper, title=report_title(data, external))


def report_title(data: Path | None, external: str | None) -> str:
    """The report's title: the demo's warning or the data folder, and an external test's source."""
    title = (
        "# drgrade demo: SYNTHETIC data, tiny random-weight CLIP (pipeline check, not a result)"
        if data is None
        else f"# drgrade on {data}"
    )
    if external:
        title += (
            f"\n\nExternal validation: trained and validated without {external}, tested on {external} only."
        )
    return title
