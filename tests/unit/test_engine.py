"""The engine runs every stage over (task, data module); the writers are configured callbacks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from drgrade.callbacks import EvaluationWriter, ValidationPredictionsWriter
from drgrade.callbacks.split import SplitGuard
from drgrade.data import DRDataModule
from drgrade.engine import Engine
from drgrade.errors import OptionError
from drgrade.files import file_sha256
from drgrade.provenance import UNTRAINED
from drgrade.tasks import FCNCLIP, ZeroShotCLIP, load_task

SIZE = 64


def small_data(synthetic: Path) -> DRDataModule:
    return DRDataModule(
        roots={"aptos2019": str(synthetic / "aptos2019"), "messidor2": str(synthetic / "messidor2")},
        image_size=SIZE,
        batch_size=64,
        num_workers=0,
    )


def quiet_engine(root: Path, *callbacks) -> Engine:
    return Engine(
        default_root_dir=root,
        logger=False,
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def test_a_task_holds_no_run_state_and_wires_no_writers():
    task = FCNCLIP("RN-tiny", None, SIZE, decoder_widths=(8, 8, 8))
    assert not hasattr(task, "origin") and not hasattr(task, "predictions_out")
    assert task.configure_callbacks() == []  # the writers are the trainer's callbacks (configs/trainer.yaml)


def test_fit_of_a_zero_shot_model_validates_and_saves_then_test_names_that_checkpoint(synthetic, tmp_path):
    engine = quiet_engine(tmp_path, EvaluationWriter(figures=False), ValidationPredictionsWriter())
    assert any(isinstance(c, SplitGuard) for c in engine.trainer.callbacks)  # always on
    options = {"template_sets": ["clinical", "plain"], "typicality_images": 32, "bootstrap_resamples": 0}
    task = ZeroShotCLIP("RN-tiny", None, SIZE, **options)
    best = engine.fit(task, small_data(synthetic))
    assert best == tmp_path / "checkpoints" / "best-validated.ckpt" and best.is_file()
    assert (best.parent / "val_predictions.csv").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["stage"] == "val"  # the fitting pass

    tester = quiet_engine(tmp_path / "test", EvaluationWriter(figures=False))
    tester.test(load_task(best), small_data(synthetic), ckpt_path=best)
    document = json.loads((tmp_path / "test" / "metrics.json").read_text())
    label = f"best-validated.ckpt sha256:{file_sha256(best)}"
    assert document["stage"] == "test" and document["provenance"]["checkpoint"] == label
    assert not (tmp_path / "test" / "confusion_matrix.png").exists()  # figures: false
    with (tmp_path / "test" / "predictions.csv").open(newline="") as f:
        assert {row["checkpoint"] for row in csv.DictReader(f)} == {label}


def test_a_trainable_model_is_evaluated_from_a_checkpoint_or_as_the_labelled_baseline(synthetic, tmp_path):
    task = FCNCLIP("RN-tiny", None, SIZE, decoder_widths=(8, 8, 8), bootstrap_resamples=0)
    engine = quiet_engine(tmp_path, EvaluationWriter(figures=False))
    with pytest.raises(OptionError, match="needs a trained checkpoint"):
        engine.test(task, small_data(synthetic))
    assert not (tmp_path / "metrics.json").exists()
    engine.validate(task, small_data(synthetic), allow_untrained=True)
    provenance = json.loads((tmp_path / "metrics.json").read_text())["provenance"]
    assert provenance["checkpoint"] == UNTRAINED and provenance["untrained_baseline"]


def test_predict_out_needs_the_prediction_writer(synthetic, tmp_path):
    task = ZeroShotCLIP("RN-tiny", None, SIZE, template_sets=["clinical"])
    with pytest.raises(OptionError, match="PredictionWriter"):
        quiet_engine(tmp_path).predict(task, small_data(synthetic), out=tmp_path / "graded.csv")
