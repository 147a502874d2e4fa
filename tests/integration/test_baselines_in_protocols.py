"""The plain-CNN baseline and fully fine-tuned FCN-CLIP run through a protocol file like any image model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from drgrade.cli import main
from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import FundusDataset, folder_records
from drgrade.embeddings import read_embeddings
from drgrade.protocols.spec import load_protocol
from drgrade.tasks import CNNBaseline, load_task
from drgrade.tasks.loading import read_checkpoint
from tests.conftest import ROOT, TINY
from tests.unit.protocols.test_protocols import read_csv


def test_cnn_baseline_and_full_fine_tuning_run_from_one_protocol_file(synthetic, tmp_path):
    protocol = {
        "design": "folds",
        "models": ["cnn_baseline", "fcn_clip_finetune"],
        "seeds": [0],
        "tta": "flip4",
        "metrics": ["qwk", "auroc_macro"],
        "bootstrap_resamples": 0,
    }
    path = tmp_path / "baselines.yaml"
    path.write_text(yaml.safe_dump(protocol))
    out = tmp_path / "report"
    main(
        [
            "reproduce",
            "--protocol",
            str(path),
            "--data",
            str(synthetic),
            "--configs",
            str(ROOT / "configs"),
            "--config",
            str(TINY),  # a CLIP backbone, filtered out of the CNN's options
            "--model.init_args.cnn",
            "test_efficientnet",
            "--trainer.default_root_dir",
            str(tmp_path / "unused-root"),
            "--out",
            str(out),
        ]
    )
    runs = {r["model"]: r for r in read_csv(out / "runs.csv")}
    assert set(runs) == {"cnn_baseline", "cnn_baseline+flip4", "fcn_clip_finetune", "fcn_clip_finetune+flip4"}
    assert all(0 <= float(r["auroc_macro"]) <= 1 for r in runs.values())
    tested = {
        json.loads(p.read_text())["model_name"]: p
        for p in (out / "runs" / "cnn_baseline" / "seed0").rglob("metrics.json")
    }
    assert set(tested) == {"CNN baseline"}
    # the CNN's checkpoint loads as data and decides like any model, its views averaged (flip4)
    checkpoint = next((out / "runs" / "cnn_baseline" / "seed0").rglob("best-*.ckpt"))
    task = load_task(checkpoint).eval()
    assert isinstance(task, CNNBaseline) and task.hparams.cnn == "test_efficientnet"
    task.hparams.tta = "flip4"
    from drgrade.serving.export import export_onnx
    from drgrade.serving.runner import OnnxGrader

    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = task.rule(task.decision_logits(images)).probabilities.numpy()
    grader = OnnxGrader(export_onnx(task, tmp_path / "cnn.onnx", 96))
    assert np.abs(grader.run(images.numpy())[0] - expected).max() < 1e-4
    # its embeddings: the pooled features its classifier reads, with no text tower recorded
    embedded = tmp_path / "cnn.parquet"
    photos = synthetic / "messidor2" / "IMAGES"
    main(["embed", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(photos), "--out", str(embedded)])
    table = read_embeddings(embedded)
    assert table.metadata["text_classifiers"] == {} and table.metadata["logit_scale"] is None
    record = next(r for r in folder_records(photos)[0] if str(r.path) == table.frame["file"][0])
    first = FundusDataset([record], task.hparams.image_size, EvalTransform(task.normalisation()))
    task.hparams.tta = "none"
    with torch.no_grad():
        expected = task.embedding(first[0]["image"][None])[0].numpy()
    np.testing.assert_allclose(table.vectors([0])[0], expected, rtol=1e-4, atol=1e-5)
    # full fine-tuning: the CLIP image tower is optimised, in a group of its own at the smaller rate
    fine_tuned = next((out / "runs" / "fcn_clip_finetune" / "seed0").rglob("best-*.ckpt"))
    groups = read_checkpoint(fine_tuned)["optimizer_states"][0]["param_groups"]
    assert [g["lr"] for g in groups] == [2e-4, 1e-5]
    assert "cnn_baseline" in (out / "report.md").read_text()


def test_a_shipped_protocol_compares_the_baselines(tmp_path: Path):
    baselines = load_protocol("baselines")
    assert {"fcn_clip", "fcn_clip_finetune", "cnn_baseline", "linear_probe", "clip_adapter"} <= set(
        baselines.models
    )
    assert baselines.tta == ["flip4"]
