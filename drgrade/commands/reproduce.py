"""Run the paper's protocol: every model fit (or validated) then tested, the ensemble, the report.

``make demo`` runs it on synthetic data (``--demo``), ``make reproduce-table3`` on the real
downloads (``--data``).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from pathlib import Path

import yaml

from drgrade.commands.lightning import DRGradeCLI
from drgrade.commands.options import PAPER_HELP, add_switch
from drgrade.data.sources import SOURCES, download_help, downloaded
from drgrade.errors import OptionError
from drgrade.reporting.report import write_report


def _fit_then_test(cli_class, model_args: list[str], run_dirs: list[str]) -> str:
    """``fit`` then ``test`` on its best checkpoint; appends the test run folder, returns the checkpoint.

    Args:
        cli_class: the CLI class each stage runs through.
        model_args: the model's config arguments.
        run_dirs: the test run folders so far.
    """
    fit = cli_class(["fit", *model_args])
    best = fit.trainer.checkpoint_callback.best_model_path or str(
        Path(fit.trainer.log_dir) / "checkpoints" / "best-validated.ckpt"
    )
    test = cli_class(["test", *model_args, "--ckpt_path", best])
    run_dirs.append(test.trainer.log_dir)
    return best


def _real_data_args(data: Path) -> list[str]:
    """``--data.<source>_root`` for every source downloaded under ``data`` (null for the others)."""
    found = downloaded(data)
    if not found:
        raise OptionError(download_help(data))
    args = []
    for name, source in SOURCES.items():
        args += [f"--data.{source.option}", str(found[name]) if name in found else "null"]
    return args


def add_arguments(parser) -> None:
    """``--data`` or ``--demo``, the configs folder, ``--out`` and ``--paper``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument(
        "--data", type=Path | None, default=None, help="folder holding aptos2019/ and/or messidor2/"
    )
    add_switch(parser, "--demo", "synthetic data with configs/demo.yaml")
    parser.add_argument("--configs", type=Path, default=Path("configs"), help="the model configs")
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


def run(opts) -> None:
    """Run the protocol with a fresh CLI of the same class per stage, then print the report.

    Args:
        opts: the parsed options.
    """
    if opts.demo == (opts.data is not None):
        raise OptionError("reproduce needs exactly one of --data DIR or --demo")
    name = ("demo" if opts.demo else "paper") + (f"-external-{opts.external}" if opts.external else "")
    out = opts.out or Path("reports") / name
    print(
        reproduce(DRGradeCLI, None if opts.demo else opts.data, opts.configs, out, opts.paper, opts.external)
    )
    print(f"report written to {out}/")


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
    cli_class, configs: Path, out: Path, members: list[str], run_dirs: list[str], external: str | None
) -> None:
    """Fit (calibrate) and test the ensemble of ``members`` on the data the members used.

    Args:
        cli_class: the CLI class each stage runs through.
        configs: the folder of model configs.
        out: the report folder (holds the ensemble's data config).
        members: the member checkpoints.
        run_dirs: the test run folders so far.
        external: the held-out test source, or None.
    """
    # the ensemble reads the same data as its members: reuse the last run's saved data section
    saved = yaml.safe_load((Path(run_dirs[-1]) / "config.yaml").read_text())
    data_config = out / "ensemble_data.yaml"
    out.mkdir(parents=True, exist_ok=True)
    data_config.write_text(yaml.safe_dump({"data": saved["data"]}))
    _fit_then_test(
        cli_class,
        [
            "--config",
            str(configs / "ensemble.yaml"),
            "--config",
            str(data_config),
            "--model.init_args.checkpoints",
            json.dumps(members),
            *external_args(external, "ensemble"),
        ],
        run_dirs,
    )


def reproduce(
    cli_class, data: Path | None, configs: Path, out: Path, with_paper: bool, external: str | None = None
) -> str:
    """Run the protocol; ``data`` None means the synthetic demo (configs/demo.yaml overlay).

    Args:
        cli_class: the CLI class each stage runs through.
        data: the real-data folder, or None for the demo.
        configs: the folder of model configs.
        out: the report folder.
        with_paper: add the paper's numbers to the tables.
        external: test on this source only, train and validate on the others.
    """
    # every stage's W&B run in one group per invocation, so a dashboard shows the protocol together
    cli_class = partial(cli_class, wandb_group=f"reproduce-{datetime.now():%Y%m%d-%H%M%S}")
    if data is None:
        overlay = ["--config", str(configs / "demo.yaml")]
        train_overlay = ["--config", str(configs / "demo_train.yaml")]
    else:
        overlay, train_overlay = _real_data_args(data), []
    run_dirs: list[str] = []
    best: list[str] = []
    for model in ("zero_shot", "fcn_clip", "ranking"):
        model_args = ["--config", str(configs / f"{model}.yaml"), *overlay, *external_args(external, model)]
        model_args += train_overlay if model != "zero_shot" else []
        best.append(_fit_then_test(cli_class, model_args, run_dirs))
    _ensemble_stage(cli_class, configs, out, best[1:], run_dirs, external)
    title = (
        "# drgrade demo: SYNTHETIC data, tiny random-weight CLIP (pipeline check, not a result)"
        if data is None
        else f"# drgrade on {data}"
    )
    if external:
        title += (
            f"\n\nExternal validation: trained and validated without {external}, tested on {external} only."
        )
    return write_report(run_dirs, out, with_paper=with_paper, title=title)
