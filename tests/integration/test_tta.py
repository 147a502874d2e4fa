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


def test_the_page_decides_on_the_tta_views(one_photograph):
    from drgrade.data.augment import EvalTransform
    from drgrade.data.dataset import UNKNOWN, FundusDataset
    from drgrade.data.sources import Record
    from drgrade.serving.screening import screen_files

    path = one_photograph / "eye.png"
    task = tiny()
    task.hparams.tta = "flip4"
    seen: list[torch.Tensor] = []
    forward = task.forward
    task.forward = lambda images: seen.append(images.detach().clone()) or forward(images)
    row = screen_files(task, [path], 64)[0].row
    # the page's own input (quality gate, crop, resize, normalisation) and its four mirrors
    dataset = FundusDataset([Record(path, UNKNOWN, "", str(path))], 64, EvalTransform(task.normalisation()))
    image = dataset[0]["image"][None]
    views = [image, image.flip(-1), image.flip(-2), image.flip(-2, -1)]
    for view in views:  # each view went through the model
        assert any(x.shape == view.shape and torch.allclose(x, view, atol=1e-6) for x in seen)
    with torch.no_grad():
        expected = task.rule(torch.stack([forward(v) for v in views]).mean(0)).probabilities[0]
    assert row.decision is not None and np.allclose(row.decision.probabilities, expected.numpy(), atol=1e-5)
