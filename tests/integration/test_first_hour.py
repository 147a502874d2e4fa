"""The first hour of a new user: fail fast offline, pass options through reproduce, see what was run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def drgrade_fit(env: dict, *args: str) -> subprocess.CompletedProcess:
    """``python -m drgrade fit --config configs/fcn_clip.yaml ARGS`` in a fresh process, as a user runs it."""
    command = [sys.executable, "-m", "drgrade", "fit", "--config", str(ROOT / "configs" / "fcn_clip.yaml")]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=180)


def test_offline_with_missing_data_and_weights_fails_in_seconds_listing_everything(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HOME": str(tmp_path)}
    start = time.perf_counter()
    done = drgrade_fit(
        env,
        "--data.roots.aptos2019",
        str(tmp_path / "data" / "aptos2019"),
        "--data.roots.messidor2",
        str(tmp_path / "data" / "messidor2"),
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 2, done.stderr[-2000:]
    assert "3 problem(s)" in done.stderr
    assert "--data.roots.aptos2019" in done.stderr and "--data.roots.messidor2" in done.stderr
    assert (
        "HF_HUB_OFFLINE is set" in done.stderr
        and "--model.init_args.pretrained /path/to/RN50.pt" in done.stderr
    )
    assert "Traceback" not in done.stderr and "retry" not in done.stderr.lower()
    assert elapsed < 30, elapsed  # was about 60 s of download retries, then only the first problem
    assert not (tmp_path / "runs").exists()  # nothing was started, so no empty run folder


def test_a_run_that_fails_on_bad_data_leaves_no_run_folder_and_no_wandb_run(tmp_path):
    (tmp_path / "bad.csv").write_text("path,grade\nx.png,9\n")
    done = drgrade_fit(
        os.environ | {"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        "--config",
        str(ROOT / "configs" / "demo.yaml"),
        "--data.roots.aptos2019",
        "null",
        "--data.roots.messidor2",
        "null",
        "--data.synthesize_if_missing",
        "false",
        "--data.csv_sources",
        f"[{tmp_path / 'bad.csv'}]",
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    )
    assert done.returncode == 2 and "grade '9' is outside 0-4" in done.stderr, done.stderr[-2000:]
    left = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "runs").rglob("*"))
    assert not [p for p in left if "version_" in p or "wandb" in p], left


def test_what_was_run_travels_with_every_number(synthetic, tmp_path, capsys):
    """A 1-epoch random-weight run on synthetic photographs says so: in metrics.json, in the report
    (beside the paper's columns), and in every prediction row (model and checkpoint digest)."""
    import csv
    import json
    import shutil

    from drgrade.cli import main
    from drgrade.files import file_sha256
    from tests.conftest import cli_args

    runs = tmp_path / "runs"
    main(cli_args("fit", "fcn_clip", synthetic, runs, "--trainer.max_epochs", "1"))
    training = json.loads(next(runs.rglob("training.json")).read_text())
    assert training["epochs_run"] == 1 and training["max_epochs"] == 1 and training["best_epoch"] == 0
    main(cli_args("test", "fcn_clip", synthetic, runs, "--ckpt_path", "best"))
    run = max(runs.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    provenance = json.loads((run / "metrics.json").read_text())["provenance"]
    assert provenance["weights"] == {
        "backbone": "RN-tiny",
        "weights": "random",
        "sha256": None,
        "pretraining": [],
    }
    assert provenance["training"]["epochs_run"] == 1 and provenance["checkpoint_epoch"] == 0
    sources = provenance["data"]["sources"]
    assert sources["aptos2019"]["synthetic"] and sources["messidor2"]["test"] > 0
    assert provenance["code"]["drgrade"] and provenance["machine"]["cpu_cores"] >= 1
    checkpoint = Path(training["best_checkpoint"])
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert {r["model"] for r in rows} == {"FCN-CLIP"}
    assert {r["checkpoint"] for r in rows} == {f"{checkpoint.name} sha256:{file_sha256(checkpoint)}"}

    main(["report", str(run), "--out", str(tmp_path / "report"), "--paper"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.index("## Provenance") < report.index("Table 3")
    for fact in ("RN-tiny, random initialisation", "1 of 1 epochs", "aptos2019 (SYNTHETIC)", "sha256 "):
        assert fact in report, fact
    note = report[report.index("The (paper) columns") :].split("\n")[0]
    assert "backbone RN-tiny" in note and "SYNTHETIC photographs" in note and "at most 1 epochs" in note

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    wanted = tmp_path / "asked" / "graded.csv"
    wanted.parent.mkdir()
    main(
        cli_args(
            "predict",
            "fcn_clip",
            synthetic,
            runs,
            "--ckpt_path",
            "best",
            "--data.predict_dir",
            str(folder),
            "--out",
            str(wanted),
        )
    )
    rows = list(csv.DictReader(wanted.open()))
    assert len(rows) == 2 and all(
        r["grade"] and r["patient_id"] == "" for r in rows
    )  # a folder names no patients
    assert {r["model"] for r in rows} == {"FCN-CLIP"}
