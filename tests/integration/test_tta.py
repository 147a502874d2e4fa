"""Test-time augmentation: ``--model.init_args.tta flip`` averages the logits of an image and its mirror."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from drgrade.cli import main
from drgrade.errors import OptionError
from drgrade.protocols.spec import load_protocol
from drgrade.serving.export import ExportGraph
from drgrade.tasks import ZeroShotCLIP
from tests.conftest import cli_args


def tiny() -> ZeroShotCLIP:
    task = ZeroShotCLIP(backbone="RN-tiny", pretrained=None, image_size=64, template_sets=["clinical"]).eval()
    task.selected.fill_(0)
    return task


def batch_of(images: torch.Tensor) -> dict:
    """A prediction batch of ``images``, as the data module gives one."""
    n = len(images)
    return {
        "image": images,
        "index": torch.arange(n),
        "error": [""] * n,
        "digest": [""] * n,
        "exam": [""] * n,
    }


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
        predicted = flipped.predict_step(batch_of(images), 0)["outputs"]
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


@pytest.mark.parametrize(
    ("tta", "views"),
    [
        ("flip4", [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-1).flip(-2)]),
        ("rot4", [lambda x: x, *(lambda x, k=k: torch.rot90(x, k, (2, 3)) for k in (1, 2, 3))]),
    ],
)
def test_larger_tta_sets_average_every_view_in_prediction_and_export(tta, views, tmp_path):
    from drgrade.serving.export import export_onnx
    from drgrade.serving.runner import OnnxGrader

    images = torch.randn(3, 3, 64, 64)
    task = tiny()
    task.hparams.tta = tta
    with torch.no_grad():
        expected = torch.stack([task(view(images)) for view in views]).mean(0)
        assert not torch.allclose(expected, (task(images) + task(images.flip(-1))) / 2, atol=1e-4)
        assert torch.allclose(task.decision_logits(images), expected, atol=1e-5)
        probabilities = task.rule(expected).probabilities
    assert torch.allclose(task.predict_step(batch_of(images), 0)["outputs"][0], probabilities, atol=1e-5)
    if tta == "rot4":  # turns and mirrors trace into the graph (the runner's operator check passes)
        graph = OnnxGrader(export_onnx(task, tmp_path / "m.onnx", 64))
        assert np.abs(graph.run(images.numpy())[0] - probabilities.numpy()).max() < 1e-4


def test_a_protocol_names_its_tta_sets_and_refuses_others(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("design: folds\nmodels: [zero_shot]\ntta: [flip, flip4]\n")
    assert load_protocol(path).tta == ["flip", "flip4"]
    path.write_text("design: folds\nmodels: [zero_shot]\ntta: rot4\n")
    assert load_protocol(path).tta == ["rot4"]
    path.write_text("design: folds\nmodels: [zero_shot]\ntta: [flip, spin]\n")
    with pytest.raises(OptionError, match=r"p.yaml: tta must be one of \['flip', 'flip4', 'rot4'\]"):
        load_protocol(path)
