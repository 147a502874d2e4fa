"""Test-time augmentation: ``--model.init_args.tta flip`` averages the logits of an image and its mirror."""

from __future__ import annotations

import json

import torch

from drgrade.cli import main
from drgrade.serving.export import ExportGraph
from drgrade.tasks import ZeroShotCLIP
from tests.conftest import cli_args


def tiny() -> ZeroShotCLIP:
    task = ZeroShotCLIP(backbone="RN-tiny", pretrained=None, image_size=64, template_sets=["clinical"]).eval()
    task.selected.fill_(0)
    return task


def test_flip_averages_the_logits_of_both_views_in_evaluation_prediction_and_export():
    images = torch.randn(3, 3, 64, 64)
    task = tiny()
    with torch.no_grad():
        assert torch.equal(task.decision_logits(images), task(images))
        expected = (task(images) + task(images.flip(-1))) / 2
        assert not torch.allclose(expected, task(images), atol=1e-4)  # the mirror changes the answer
        flipped = task
        flipped.hparams.tta = "flip"
        assert torch.allclose(flipped.decision_logits(images), expected, atol=1e-5)
        batch = {
            "image": images,
            "index": torch.arange(3),
            "error": [""] * 3,
            "digest": [""] * 3,
            "exam": [""] * 3,
        }
        predicted = flipped.predict_step(batch, 0)["outputs"]
        assert torch.allclose(predicted[0], flipped.rule(expected).probabilities, atol=1e-5)
        exported = ExportGraph(flipped)(images)
        assert torch.allclose(exported[0], flipped.rule(expected).probabilities, atol=1e-5)


def test_test_with_tta_records_it_in_metrics(zero_shot_checkpoint, synthetic, tmp_path):
    root = tmp_path / "runs"
    main(
        cli_args(
            "test",
            "zero_shot",
            synthetic,
            root,
            "--ckpt_path",
            str(zero_shot_checkpoint),
            "--model.init_args.tta",
            "flip",
            "--model.init_args.bootstrap_resamples",
            "0",
        )
    )
    metrics = json.loads(next(root.rglob("metrics.json")).read_text())
    assert metrics["tta"] == "flip"
