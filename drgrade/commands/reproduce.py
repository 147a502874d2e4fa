"""Run a protocol file: the paper's (``paper.yaml``) unless ``--protocol NAME|FILE`` names another.

``paper.yaml`` fits then tests every model, then their ensemble, and writes the report.

``make demo`` runs the paper's on synthetic data (``--demo``), ``make reproduce-table3`` on the
real downloads (``--data``). Each stage is an ordinary ``fit`` or ``test`` run folder, run by
``DRGradeCLI`` through the engine with the model's config, the data overlay and the options
handed on from the command line.
"""

from __future__ import annotations

import difflib
import inspect
import json
from datetime import datetime
from functools import partial
from pathlib import Path

import yaml

from drgrade import CONFIGS
from drgrade.commands.lightning import DRGradeCLI
from drgrade.commands.options import PAPER_HELP, add_switch, take_options
from drgrade.data.sources import SOURCES, download_help, downloaded
from drgrade.errors import OptionError
from drgrade.protocols.spec import Protocol, load_protocol
from drgrade.reporting.report import write_report


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


def _real_data_args(data: Path) -> list[str]:
    """``--data.roots.<source>`` for every source downloaded under ``data`` (null for the others)."""
    found = downloaded(data)
    if not found:
        raise OptionError(download_help(data))
    args = []
    for name, source in SOURCES.items():
        args += [f"--data.{source.option}", str(found[name]) if name in found else "null"]
    return args


#: Options ``reproduce`` hands on to every stage it runs (each model takes the ones it has).
HANDED_PREFIXES = ("--model.", "--data.", "--trainer.")
HANDED_NAMES = ("--config", "--seed_everything")


def handed_on(args: list[str]) -> tuple[list[str], list[str]]:
    """Split ``args`` into reproduce's own options and the config options for its stages.

    Args:
        args: the command line after ``reproduce``.

    Returns:
        (own arguments, handed-on arguments as option/value pairs ``--name=value``).
    """
    own, taken = take_options(args, lambda name: name.startswith(HANDED_PREFIXES) or name in HANDED_NAMES)
    handed = [f"{name}={value}" for name, value in taken]
    check_handed(handed)
    return own, handed


def check_handed(handed: list[str]) -> None:
    """Refuse handed-on options no stage knows (with the closest names), before anything runs."""
    from lightning import Trainer

    from drgrade.data import DRDataModule
    from drgrade.tasks.loading import accepted_options, task_classes

    known = {
        "--data.": set(inspect.signature(DRDataModule).parameters),
        "--trainer.": set(inspect.signature(Trainer).parameters),
        "--model.": set().union(*(accepted_options(t) for t in task_classes().values())),
    }
    for item in handed:
        name = item.split("=", 1)[0]
        if name.startswith("--model.class_path"):
            raise OptionError("reproduce runs its four models; to train another, use drgrade fit")
        prefix = next((p for p in known if name.startswith(p)), None)
        if prefix is None:
            continue
        key = option_key(name)
        if key not in known[prefix]:
            close = difflib.get_close_matches(key, sorted(known[prefix]), n=3, cutoff=0.6)
            stem = name[: len(name) - len(key)]  # as typed: --model.init_args. or --model.
            hint = f"; did you mean {' or '.join(stem + c for c in close)}?" if close else ""
            raise OptionError(f"unknown option {name}{hint}")


def option_key(name: str) -> str:
    """``--model.init_args.lr`` and ``--model.lr`` -> ``lr``; ``--data.image_size`` -> ``image_size``."""
    return name.split(".", 1)[1].removeprefix("init_args.")


def stage_options(handed: list[str], config: Path, out: Path) -> list[str]:
    """The handed-on options a model's stages take: model options it has, configs filtered to it.

    Args:
        handed: ``--name=value`` pairs from ``handed_on``.
        config: the model's config file (names its task class).
        out: where filtered copies of handed-on config files are written.
    """
    from drgrade.tasks.loading import accepted_options, task_classes

    class_path = yaml.safe_load(config.read_text())["model"]["class_path"]
    accepted = accepted_options(task_classes()[class_path.rsplit(".", 1)[-1]])
    options = []
    for item in handed:
        name, value = item.split("=", 1)
        if name == "--config":
            value = str(filtered_config(Path(value), accepted, out / f"{config.stem}-{Path(value).name}"))
        elif name.startswith("--model.") and option_key(name) not in accepted:
            continue  # e.g. the CLIP weights for the ensemble, which has no backbone of its own
        options += [name, value]
    return options


def filtered_config(path: Path, accepted: set[str], out: Path) -> Path:
    """A copy of config ``path`` without the model options a model does not take."""
    if not path.is_file():
        raise OptionError(f"--config {path}: no such file")
    config = yaml.safe_load(path.read_text()) or {}
    model = config.get("model")
    if isinstance(model, dict):
        options = model.get("init_args", model)
        for key in [k for k in options if k not in accepted and k not in ("class_path", "init_args")]:
            del options[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config))
    return out


def add_arguments(parser) -> None:
    """``--data`` or ``--demo``, the configs folder, ``--out`` and ``--paper``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument(
        "--data", type=Path | None, default=None, help="folder holding aptos2019/ and/or messidor2/"
    )
    add_switch(parser, "--demo", "synthetic data with configs/demo.yaml")
    parser.add_argument(
        "--configs", type=Path, default=CONFIGS, help="the model configs (default: the shipped ones)"
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
        "shipped one: paper, seeds_folds, leave_one_source_out, few_shot; report in reports/<its name>",
    )


def run(opts, handed: list[str]) -> None:
    """Run the protocol file (the paper's unless ``--protocol`` names another), then print the report.

    Args:
        opts: the parsed options.
        handed: config options for every stage (``--trainer.max_epochs=2``), from ``handed_on``.
    """
    if opts.demo == (opts.data is not None):
        raise OptionError("reproduce needs exactly one of --data DIR or --demo")
    data = None if opts.demo else opts.data
    protocol = load_protocol(opts.protocol or "paper")
    if protocol.design != "paper":
        run_protocol_file(opts, protocol, data, handed)
        return
    name = protocol.name if opts.protocol else ("demo" if opts.demo else "paper")
    name += f"-external-{opts.external}" if opts.external else ""
    out = opts.out or Path("reports") / name
    report = reproduce(DRGradeCLI, protocol, data, opts.configs, out, opts.paper, opts.external, handed)
    if report is not None:
        print(report)
        print(f"report written to {out}/")


def run_protocol_file(opts, protocol: Protocol, data: Path | None, handed: list[str]) -> None:
    """A seeds x folds, leave-one-source-out or few-shot protocol on the demo or real data; its report."""
    from drgrade.protocols import run_protocol

    if opts.external:
        raise OptionError(f"--external is for design: paper; protocol {protocol.name} plans its own splits")
    out = opts.out or Path("reports") / protocol.name
    overlay, train_overlay = data_overlays(data, opts.configs)

    def stage_args(model: str) -> list[str]:
        config = opts.configs / f"{model}.yaml"
        trained = train_overlay if model != "zero_shot" else []
        # the data overlays filtered like handed-on options: a CNN takes no CLIP backbone
        data = [f"{name}={value}" for name, value in zip(overlay[::2], overlay[1::2], strict=True)]
        data += [f"{name}={value}" for name, value in zip(trained[::2], trained[1::2], strict=True)]
        return ["--config", str(config), *stage_options([*data, *handed], config, out / "handed-configs")]

    fit_then_test = partial(run_stages, DRGradeCLI, ["fit", "test"])
    print(run_protocol(DRGradeCLI, protocol, out, stage_args, fit_then_test, synthetic=data is None))
    print(f"report written to {out}/")


def data_overlays(data: Path | None, configs: Path) -> tuple[list[str], list[str]]:
    """The data arguments of every stage and the training overlay: the demo's configs, or the downloads."""
    if data is None:
        return ["--config", str(configs / "demo.yaml")], ["--config", str(configs / "demo_train.yaml")]
    return _real_data_args(data), []


def external_args(source: str | None, model: str) -> list[str]:
    """The options of an external-validation stage: the held-out source and a separate run folder.

    Args:
        source: the test source, or None for the usual grouped split.
        model: the model's run name.
    """
    if source is None:
        return []
    return [
        "--data.test_sources",
        json.dumps([source]),
        "--trainer.default_root_dir",
        f"runs/external-{source}/{model}",
    ]


def _ensemble_stage(
    stages,
    configs: Path,
    out: Path,
    members: list[str],
    external: str | None,
    handed: list[str],
    run_dirs: list[str],
) -> None:
    """Fit (calibrate) and test the ensemble of ``members`` on the data the members used.

    Args:
        stages: runs the protocol's stages of CLI arguments (``run_stages``).
        configs: the folder of model configs.
        out: the report folder (holds the ensemble's data config).
        members: the member checkpoints.
        external: the held-out test source, or None.
        handed: config options handed on to every stage.
        run_dirs: the test run folders so far.
    """
    # the ensemble reads the same data as its members: the last member's fit saved its data section
    saved = yaml.safe_load((Path(members[-1]).parents[1] / "config.yaml").read_text())
    data_config = out / "ensemble_data.yaml"
    out.mkdir(parents=True, exist_ok=True)
    data_config.write_text(yaml.safe_dump({"data": saved["data"]}))
    stages(
        [
            "--config",
            str(configs / "ensemble.yaml"),
            *stage_options(handed, configs / "ensemble.yaml", out / "handed-configs"),
            "--config",
            str(data_config),  # after the handed-on configs: the members' data, whatever they said
            "--model.init_args.checkpoints",
            json.dumps(members),
            *external_args(external, "ensemble"),
        ],
        run_dirs,
    )


def reproduce(
    cli_class,
    protocol: Protocol,
    data: Path | None,
    configs: Path,
    out: Path,
    with_paper: bool,
    external: str | None = None,
    handed: list[str] = (),
) -> str | None:
    """Run a ``paper`` protocol; ``data`` None means the synthetic demo (configs/demo.yaml overlay).

    Returns the report's Markdown (None when the protocol's stages end with ``fit``).

    Args:
        cli_class: the CLI class each stage runs through.
        protocol: the protocol (``design: paper``): its models, stages and ensemble.
        data: the real-data folder, or None for the demo.
        configs: the folder of model configs.
        out: the report folder.
        with_paper: add the paper's numbers to the tables.
        external: test on this source only, train and validate on the others.
        handed: config options for every stage, after drgrade's own (each model takes those it has).
    """
    # every stage's W&B run in one group per invocation, so a dashboard shows the protocol together
    cli_class = partial(cli_class, wandb_group=f"reproduce-{datetime.now():%Y%m%d-%H%M%S}")
    overlay, train_overlay = data_overlays(data, configs)
    stages = partial(run_stages, cli_class, protocol.stages)
    run_dirs: list[str] = []
    best: dict[str, str] = {}
    for model in protocol.models:
        config = configs / f"{model}.yaml"
        model_args = ["--config", str(config), *overlay, *external_args(external, model)]
        model_args += train_overlay if model != "zero_shot" else []
        model_args += stage_options(list(handed), config, out / "handed-configs")
        best[model] = stages(model_args, run_dirs)
    if protocol.ensemble:
        members = [best[model] for model in protocol.ensemble]
        _ensemble_stage(stages, configs, out, members, external, list(handed), run_dirs)
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
