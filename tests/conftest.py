"""Shared fixtures: offline W&B, one small synthetic dataset per session, a tiny config."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
# the preprocessing cache of every test run (subprocesses included) lives in a fresh temp dir
os.environ["DRGRADE_CACHE_DIR"] = tempfile.mkdtemp(prefix="drgrade-cache-")
os.environ["DRGRADE_HELP_DIR"] = tempfile.mkdtemp(prefix="drgrade-help-")  # drgrade VERB --help's texts

import torch

from drgrade.data.sources import write_synthetic

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: no oversubscription
    torch.set_num_threads(1)

TESTS = Path(__file__).parent
ROOT = TESTS.parent
TINY = TESTS / "conf" / "tiny.yaml"
TINY_TRAIN = TESTS / "conf" / "tiny_train.yaml"
TRAINABLE = ("fcn_clip", "ranking")


#: End-to-end scenarios taking ten seconds or more on two cores (training runs, DDP, the browser,
#: subprocess kills). ``make test`` leaves them out to stay under three minutes; ``make test-slow``
#: runs them, and CI runs both.
SLOW = {
    "test_cnn_baseline_and_full_fine_tuning_run_from_one_protocol_file",
    "test_flair_through_every_model_with_the_overlap_said",
    "test_vit_clip_through_every_model",
    "test_kill_9_then_resume_loses_at_most_the_epoch_in_progress",
    "test_last_checkpoint_follows_every_epoch_not_the_best",
    "test_a_killed_predict_resumes_and_grades_each_photograph_once",
    "test_protocol_in_miniature",
    "test_a_users_zero_shot_only_protocol_runs_from_another_folder",
    "test_upload_two_photographs_and_a_broken_file",
    "test_fcn_clip_fit_test_predict_learns",
    "test_ranking_fit_calibrates_and_test_reports_both",
    "test_fit_resumes_from_last_and_validate_calibrates_any_model",
    "test_wandb_offline_run_is_named_grouped_configured_and_has_native_charts",
    "test_explain_cli_overlays_comparison_and_unreadable_file",
    "test_a_run_that_fails_on_bad_data_leaves_no_run_folder_and_no_wandb_run",
    "test_offline_with_missing_data_and_weights_fails_in_seconds_listing_everything",
    "test_what_was_run_travels_with_every_number",
    "test_resumed_checkpoint_naming_files_outside_the_run_deletes_nothing",
    "test_a_checkpoint_asking_for_gigabytes_is_refused_by_name_without_them",
    "test_loader_workers_augment_differently_and_reproducibly",
    "test_fit_and_test_on_all_five_sources_then_explain_real_layout_masks",
    "test_a_checkpoint_naming_a_weights_file_makes_drgrade_read_none",
    "test_an_image_model_runs_on_its_split_file_and_tta_is_reported_beside_it",
    "test_quality_model_learns_rejects_and_gates",
    "test_ensemble_is_calibrated_on_validation_and_its_checkpoint_carries_the_thresholds",
    "test_an_ensemble_refuses_members_it_was_not_fitted_on",
    "test_cli_imports_and_helps_without_the_optional_extras",
    "test_the_page_gates_with_the_quality_model_for_a_checkpoint_or_an_onnx_file",
}


def pytest_collection_modifyitems(items) -> None:
    """Mark the ``SLOW`` scenarios ``slow`` (by test function name, parameters included)."""
    for item in items:
        if item.originalname in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path_factory, monkeypatch):
    wandb_dir = tmp_path_factory.getbasetemp() / "wandb"
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(wandb_dir))
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """A small synthetic APTOS + Messidor-2 download (180 + 90 images at 128 px)."""
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, num_aptos=180, num_messidor=90, image_size=128, seed=0)
    return out


def cli_args(verb: str, model: str, synthetic: Path, run_root: Path, *extra: str) -> list[str]:
    """Arguments for ``drgrade.cli.main``: a shipped model config + the tiny test overlay(s)."""
    train = ["--config", str(TINY_TRAIN)] if model in TRAINABLE else []
    return [
        verb,
        "--config",
        str(ROOT / "configs" / f"{model}.yaml"),
        "--config",
        str(TINY),
        *train,
        "--data.roots.aptos2019",
        str(synthetic / "aptos2019"),
        "--data.roots.messidor2",
        str(synthetic / "messidor2"),
        "--trainer.default_root_dir",
        str(run_root),
        *extra,
    ]


def ensemble_args(verb: str, synthetic: Path, run_root: Path, members: str, *extra: str) -> list[str]:
    """Arguments for the shipped ensemble config over the synthetic data at the tiny image size."""
    return [
        verb,
        "--config",
        str(ROOT / "configs" / "ensemble.yaml"),
        "--data.roots.aptos2019",
        str(synthetic / "aptos2019"),
        "--data.roots.messidor2",
        str(synthetic / "messidor2"),
        "--data.image_size",
        "96",
        "--trainer.default_root_dir",
        str(run_root),
        "--model.init_args.checkpoints",
        members,
        *extra,
    ]


def predict_folder(model: str, synthetic: Path, run_root: Path, checkpoint, folder: Path) -> dict[str, dict]:
    """``drgrade predict`` of ``checkpoint`` on ``folder``; the new predictions.csv's rows by file name."""
    from drgrade.cli import main

    main(
        cli_args(
            "predict",
            model,
            synthetic,
            run_root,
            "--ckpt_path",
            str(checkpoint),
            "--data.predict_dir",
            str(folder),
        )
    )
    newest = max(Path(run_root).rglob("predictions.csv"), key=lambda p: p.stat().st_mtime_ns)
    with newest.open(newline="") as f:
        return {Path(row["file"]).name: row for row in csv.DictReader(f)}


@pytest.fixture
def one_photograph(synthetic, tmp_path) -> Path:
    """A folder holding one synthetic photograph, ``eye.png``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(next((synthetic / "aptos2019" / "train_images").iterdir()), folder / "eye.png")
    return folder


@pytest.fixture(scope="session")
def zero_shot_checkpoint(synthetic, tmp_path_factory) -> Path:
    """The tiny zero-shot model after ``drgrade fit`` (template set chosen on validation)."""
    from drgrade.cli import main

    root = tmp_path_factory.mktemp("zero_shot_fit")
    main(cli_args("fit", "zero_shot", synthetic, root))
    return next(root.rglob("best-validated.ckpt"))


def with_typicality_cut(checkpoint: Path, out: Path, cut: float) -> Path:
    """A copy of ``checkpoint`` whose typicality check refuses beyond ``cut`` (inf: the check is off).

    The tests' models are fitted on synthetic photographs only, so their check rightly finds a real
    photograph unlike any they saw; tests of what the rule gate alone decides turn it off.
    """
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["state_dict"]["typicality.cut"] = torch.tensor(float(cut))
    torch.save(state, out)
    return out


class RunsCode:
    """Unpickling this object runs a shell command: a crafted file's payload (drgrade must never run it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def code_running_file(path, marker, **entries):
    """A torch.save file holding ``entries`` and a payload that would create ``marker`` if unpickled."""
    torch.save({"state_dict": {}, **entries, "payload": RunsCode(marker)}, path)
    return path


def drgrade_in_a_fresh_process(args: list[str]):
    """Run ``drgrade ARGS`` in a new Python from the checkout; returns (the completed process, whether
    torch or Lightning was imported). For what must be answered before the heavy imports."""
    import subprocess
    import sys

    code = (
        f"import sys\nfrom drgrade.cli import main\ntry:\n    main({args!r})\nfinally:\n"
        "    print('torch' in sys.modules or 'lightning' in sys.modules, file=sys.stderr)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    *stderr, heavy = run.stderr.splitlines()
    run.stderr = "\n".join(stderr)
    return run, heavy == "True"
