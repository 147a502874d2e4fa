"""The learned quality model gates every path: ``predict``, its exported graph in ``deploy``, the page.

A tiny quality checkpoint is trained here: a logistic regression on the random tiny tower's
pooled embeddings of synthetic photographs against dimmed copies (what the rule gate still
passes), written as the quality head. Then a folder of three photographs, one dimmed (the
quality model's reject) and one nearly black (the rule gate's) is graded by ``predict
--data.quality_model``, by ``python -m drgrade.deploy --quality_onnx`` and by the page's graders.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from drgrade.cli import main
from drgrade.data.augment import EvalTransform
from drgrade.data.images import write_rgb
from drgrade.data.intake import take_in
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.quality import FEATURES
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.decision.actions import TO_GRADER, screener_reason
from drgrade.errors import ModelFileError, OptionError
from drgrade.serving.runner import OnnxGrader, OnnxQualityModel
from drgrade.serving.runner import main as deploy_main
from drgrade.tasks.quality import QualityModel, QualityTask
from tests.conftest import ROOT, TINY, cli_args, with_typicality_cut

SIZE = 96


def dimmed(image: np.ndarray, factor: float) -> np.ndarray:
    """A photograph taken with too little light: dim, yet bright enough for the rule gate."""
    return (image * factor).astype(np.uint8)


@pytest.fixture(scope="module")
def quality_checkpoint(tmp_path_factory) -> Path:
    """A quality checkpoint whose head was fitted to reject dimmed photographs (P(reject) > 0.97 held out)."""
    torch.manual_seed(0)
    task = QualityTask(backbone="RN-tiny", pretrained=None, image_size=SIZE, typicality_images=0).eval()
    transform = EvalTransform(task.normalisation())
    images, rejected = [], []
    for i in range(24):
        image, _ = render_fundus(i % 5, 128, seeded_rng(31, 7, i))
        images += [image, dimmed(image, 0.3 + 0.05 * (i % 5))]
        rejected += [0, 1]
    batch = torch.stack([transform(preprocess_fundus(image, SIZE), 0) for image in images])
    with torch.no_grad():
        embedding = task.backbone.encode_image(batch, normalize=False).float().numpy()
    mean, spread = embedding.mean(0), embedding.std(0) + 1e-8  # the tiny tower's features are tiny
    fitted = LogisticRegression(max_iter=5000).fit((embedding - mean) / spread, rejected)
    weight = fitted.coef_[0] / spread
    with torch.no_grad():  # good: logit 0, usable: never, reject: the regression's logit
        task.head.weight.zero_()
        task.head.weight[2] = torch.from_numpy(weight).float()
        task.head.bias.copy_(torch.tensor([0.0, -30.0, fitted.intercept_[0] - float(weight @ mean)]))
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(checkpoint)
    path = tmp_path_factory.mktemp("quality") / "quality.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def photographs(tmp_path_factory) -> Path:
    """Three gradable synthetic photographs, a dimmed one and a nearly black one."""
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        write_rgb(folder / f"eye{i}.png", render_fundus(i, 128, seeded_rng(99, 7, i))[0])
    image, _ = render_fundus(1, 128, seeded_rng(99, 7, 5))
    write_rgb(folder / "dim.png", dimmed(image, 0.5))
    write_rgb(folder / "dark.png", dimmed(image, 0.08))
    return folder


@pytest.fixture(scope="module")
def grader_checkpoint(zero_shot_checkpoint, tmp_path_factory) -> Path:
    """The tiny zero-shot model with its typicality check off: what the gates decide is tested alone."""
    return with_typicality_cut(zero_shot_checkpoint, tmp_path_factory.mktemp("grader") / "g.ckpt", math.inf)


def rows_of(path: Path) -> dict[str, dict]:
    with path.open(newline="") as f:
        return {Path(row["file"]).name: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def predicted(synthetic, grader_checkpoint, quality_checkpoint, photographs, tmp_path_factory) -> dict:
    """``drgrade predict --data.quality_model``'s rows by file name."""
    runs = tmp_path_factory.mktemp("runs")
    main(
        cli_args(
            "predict",
            "zero_shot",
            synthetic,
            runs,
            "--ckpt_path",
            str(grader_checkpoint),
            "--data.predict_dir",
            str(photographs),
            "--data.quality_model",
            str(quality_checkpoint),
        )
    )
    return rows_of(next(runs.rglob("predictions.csv")))


@pytest.fixture(scope="module")
def exported(synthetic, grader_checkpoint, quality_checkpoint, tmp_path_factory) -> tuple[Path, Path]:
    """(the grading model's ONNX file, the quality model's ONNX file), both from ``drgrade export``."""
    out = tmp_path_factory.mktemp("onnx")
    main(
        [
            *cli_args("export", "zero_shot", synthetic, out),
            "--ckpt_path",
            str(grader_checkpoint),
            "--out",
            str(out / "grader.onnx"),
        ]
    )
    quality = ["--config", str(ROOT / "configs" / "quality.yaml"), "--config", str(TINY)]
    main(["export", *quality, "--ckpt_path", str(quality_checkpoint), "--out", str(out / "quality.onnx")])
    return out / "grader.onnx", out / "quality.onnx"


def quality_verdict(quality_checkpoint: Path, path: Path) -> str:
    """What the quality model says of a file's network-size crop (the one intake predict uses)."""
    return QualityModel(quality_checkpoint).verdict(take_in(path, SIZE, hashes=False)[0])


def test_predict_with_a_quality_model_sends_its_rejects_to_a_grader(
    predicted, quality_checkpoint, photographs
):
    assert sorted(predicted) == ["dark.png", "dim.png", "eye0.png", "eye1.png", "eye2.png"]
    dim = predicted["dim.png"]
    assert dim["error"].startswith("ungradable: the quality model rejects it (P(reject) 0.9")
    assert dim["error"].endswith(", quality.ckpt)")
    assert dim["error"] == quality_verdict(quality_checkpoint, photographs / "dim.png")
    assert (dim["action"], dim["grade"], dim["refer_to_grader"]) == (TO_GRADER, "", "1")
    # the rule gate answers first, with its own evidence
    assert predicted["dark.png"]["error"].startswith("ungradable: under-exposed")
    assert predicted["dark.png"]["action"] == TO_GRADER
    for name in ("eye0.png", "eye1.png", "eye2.png"):
        row = predicted[name]
        assert row["error"] == "" and row["grade"] in "01234" and row["grade"] != ""
        assert row["action"] in ("refer", "no refer", "to grader")
    # the gate's measurements are written for every photograph, the refused ones included
    for row in predicted.values():
        assert all(row[name] != "" for name in FEATURES), row["file"]


def test_deploy_with_the_exported_quality_model_equals_predict(exported, predicted, photographs, tmp_path):
    grader, quality = exported
    out = tmp_path / "deployed.csv"
    deploy_main(
        [str(grader), str(photographs), "--out", str(out), "--quality_onnx", str(quality), "--workers", "2"]
    )
    deployed = rows_of(out)
    assert sorted(deployed) == sorted(predicted)
    for name, row in predicted.items():
        for column in ("error", "action", "grade", "refer_to_grader", *FEATURES):
            assert deployed[name][column] == row[column], (name, column)
    # without the quality model, deploy grades what only the learned gate refused
    deploy_main([str(grader), str(photographs), "--out", str(tmp_path / "plain.csv"), "--workers", "0"])
    assert rows_of(tmp_path / "plain.csv")["dim.png"]["error"] == ""


def test_the_exported_quality_model_agrees_with_its_checkpoint(exported, quality_checkpoint, photographs):
    onnx_model, torch_model = OnnxQualityModel(exported[1]), QualityModel(quality_checkpoint)
    assert onnx_model.name == "quality.ckpt"  # its verdicts name the checkpoint, as predict's do
    for path in sorted(photographs.iterdir()):
        crop = take_in(path, SIZE, hashes=False)[0]
        assert onnx_model.probabilities(crop) == pytest.approx(torch_model.probabilities(crop), abs=1e-4)


def test_the_page_gates_with_the_quality_model_for_a_checkpoint_or_an_onnx_file(
    exported, grader_checkpoint, quality_checkpoint, photographs, predicted
):
    from drgrade.commands.serve import grader_of

    paths = sorted(photographs.iterdir())
    checkpoint, onnx = (
        SimpleNamespace(ckpt_path=str(grader_checkpoint), onnx=None),
        SimpleNamespace(ckpt_path=None, onnx=str(exported[0])),
    )
    served = [  # (the served model, quality_model, quality_onnx)
        (checkpoint, str(quality_checkpoint), None),
        (checkpoint, None, str(exported[1])),
        (onnx, None, str(exported[1])),
    ]
    for opts, quality_model, quality_onnx in served:
        grade, _ = grader_of(opts, quality_model, quality_onnx)
        rows = {Path(answer.row.file).name: answer.row for answer in grade(paths)}
        assert {name: row.error for name, row in rows.items()} == {
            n: r["error"] for n, r in predicted.items()
        }
        assert rows["dim.png"].action == TO_GRADER
        # the card's lead, in a screener's words
        assert (
            screener_reason(rows["dim.png"].error)[0]
            == "photograph of too low quality to grade (quality model)"
        )


def test_a_quality_model_and_a_grading_model_are_not_mistaken_for_each_other(exported, quality_checkpoint):
    grader, quality = exported
    with pytest.raises(ModelFileError, match="it is a quality model: pass it as --quality_onnx"):
        OnnxGrader(quality)
    with pytest.raises(ModelFileError, match="not a quality model's"):
        OnnxQualityModel(grader)
    with pytest.raises(ModelFileError, match="not a quality model's"):
        OnnxGrader(grader, quality=grader)
    from drgrade.commands.serve import grader_of

    served = SimpleNamespace(ckpt_path=None, onnx=str(grader))
    with pytest.raises(OptionError, match="--quality_onnx"):
        grader_of(served, quality_model=str(quality_checkpoint))


def test_a_quality_graph_with_other_levels_is_refused_and_int8_is_not_offered(
    exported, quality_checkpoint, tmp_path, capsys
):
    model = onnx.load(str(exported[1]))
    for entry in model.metadata_props:
        if entry.key == "quality_levels":
            entry.value = json.dumps(["gradable", "reject"])
    onnx.save(model, str(tmp_path / "two_levels.onnx"))
    with pytest.raises(ModelFileError, match="quality_levels"):
        OnnxQualityModel(tmp_path / "two_levels.onnx")
    quality = ["--config", str(ROOT / "configs" / "quality.yaml"), "--config", str(TINY)]
    out = ["--ckpt_path", str(quality_checkpoint), "--out", str(tmp_path / "q.onnx"), "--quantize", "int8"]
    with pytest.raises(SystemExit) as stopped:
        main(["export", *quality, *out])
    assert stopped.value.code == 2 and "exported in float only" in capsys.readouterr().err
