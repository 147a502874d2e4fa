"""The paper's protocol end to end: zero-shot test, FCN-CLIP and ranking fit + test, the
ensemble, then Table 3 / Table 4. ``make demo`` runs it on synthetic data, ``make
reproduce-table3`` on the real downloads."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from drgrade.data.sources import APTOS_CSV, MESSIDOR_CSV
from drgrade.evaluation.report import write_report

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


def reproduce(data: Path | None, configs: Path, out: Path, with_paper: bool) -> str:
    """Run the protocol; ``data`` None means the synthetic demo (configs/demo.yaml overlay)."""
    from drgrade.cli import run_lightning

    overlay = ["--config", str(configs / "demo.yaml")] if data is None else _real_data_args(data)
    run_dirs: list[str] = []
    zero_shot = run_lightning(["test", "--config", str(configs / "zero_shot.yaml"), *overlay])
    run_dirs.append(zero_shot.trainer.log_dir)
    best: list[str] = []
    for model in ("fcn_clip", "ranking"):
        fit = run_lightning(["fit", "--config", str(configs / f"{model}.yaml"), *overlay])
        best.append(fit.trainer.checkpoint_callback.best_model_path)
        test = run_lightning(
            ["test", "--config", str(configs / f"{model}.yaml"), *overlay, "--ckpt_path", best[-1]]
        )
        run_dirs.append(test.trainer.log_dir)
    # the ensemble reads the same data as its members: reuse the last run's saved data section
    saved = yaml.safe_load((Path(run_dirs[-1]) / "config.yaml").read_text())
    data_config = out / "ensemble_data.yaml"
    out.mkdir(parents=True, exist_ok=True)
    data_config.write_text(yaml.safe_dump({"data": saved["data"]}))
    ensemble = run_lightning(
        [
            "test",
            "--config",
            str(configs / "ensemble.yaml"),
            "--config",
            str(data_config),
            "--model.init_args.checkpoints",
            json.dumps(best),
        ]
    )
    run_dirs.append(ensemble.trainer.log_dir)
    title = (
        "# drgrade demo: SYNTHETIC data, tiny random-weight CLIP (pipeline check, not a result)"
        if data is None
        else f"# drgrade on {data}"
    )
    return write_report(run_dirs, out, with_paper=with_paper, title=title)
