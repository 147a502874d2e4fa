"""Run the paper's protocol: every model fit (or validated) then tested, the ensemble, the report.

``make demo`` runs it on synthetic data (``--demo``), ``make reproduce-table3`` on the real
downloads (``--data``).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from drgrade.commands.options import PAPER_HELP, add_switch
from drgrade.data.sources import APTOS_CSV, MESSIDOR_CSV
from drgrade.evaluation.report import write_report

MODEL_BOUND = False

DOWNLOAD_HELP = """\
No real data found under {data}. To reproduce Table 3, download:
  APTOS 2019 Blindness Detection (Kaggle competition "aptos2019-blindness-detection"):
    train.csv and train_images/  ->  {data}/aptos2019/
  Messidor-2 images (ADCIS, https://www.adcis.net/en/third-party/messidor2/, licence form):
    IMAGES/ and messidor-2.csv (exam pairs)  ->  {data}/messidor2/
  Messidor-2 adjudicated grades (Krause et al. 2018; Kaggle dataset "messidor2"
  by Google Brain): messidor_data.csv  ->  {data}/messidor2/
Then run `make reproduce-table3 DATA={data}`. Either dataset alone also works.
To see the protocol run now on synthetic data: `make demo`."""


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
    aptos, messidor = data / "aptos2019", data / "messidor2"
    has_aptos, has_messidor = (aptos / APTOS_CSV).is_file(), (messidor / MESSIDOR_CSV).is_file()
    if not (has_aptos or has_messidor):
        raise SystemExit(DOWNLOAD_HELP.format(data=data))
    return [
        "--data.aptos_root",
        str(aptos) if has_aptos else "null",
        "--data.messidor_root",
        str(messidor) if has_messidor else "null",
    ]


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


def run(cli) -> None:
    """Run the protocol with a fresh CLI of the same class per stage, then print the report.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts = cli.options()
    if opts.demo == (opts.data is not None):
        raise ValueError("reproduce needs exactly one of --data DIR or --demo")
    out = opts.out or Path("reports") / ("demo" if opts.demo else "paper")
    print(reproduce(type(cli), None if opts.demo else opts.data, opts.configs, out, opts.paper))
    print(f"report written to {out}/")


def reproduce(cli_class, data: Path | None, configs: Path, out: Path, with_paper: bool) -> str:
    """Run the protocol; ``data`` None means the synthetic demo (configs/demo.yaml overlay).

    Args:
        cli_class: the CLI class each stage runs through.
        data: the real-data folder, or None for the demo.
        configs: the folder of model configs.
        out: the report folder.
        with_paper: add the paper's numbers to the tables.
    """
    if data is None:
        overlay = ["--config", str(configs / "demo.yaml")]
        train_overlay = ["--config", str(configs / "demo_train.yaml")]
    else:
        overlay, train_overlay = _real_data_args(data), []
    run_dirs: list[str] = []
    best: list[str] = []
    for model in ("zero_shot", "fcn_clip", "ranking"):
        model_args = ["--config", str(configs / f"{model}.yaml"), *overlay]
        model_args += train_overlay if model != "zero_shot" else []
        best.append(_fit_then_test(cli_class, model_args, run_dirs))
    # the ensemble reads the same data as its members: reuse the last run's saved data section
    saved = yaml.safe_load((Path(run_dirs[-1]) / "config.yaml").read_text())
    data_config = out / "ensemble_data.yaml"
    out.mkdir(parents=True, exist_ok=True)
    data_config.write_text(yaml.safe_dump({"data": saved["data"]}))
    members = ["--model.init_args.checkpoints", json.dumps(best[1:])]
    _fit_then_test(
        cli_class,
        ["--config", str(configs / "ensemble.yaml"), "--config", str(data_config), *members],
        run_dirs,
    )
    title = (
        "# drgrade demo: SYNTHETIC data, tiny random-weight CLIP (pipeline check, not a result)"
        if data is None
        else f"# drgrade on {data}"
    )
    return write_report(run_dirs, out, with_paper=with_paper, title=title)
