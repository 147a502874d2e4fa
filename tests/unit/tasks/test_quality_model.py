"""The learned gradability option: EyeQ's labels, the quality model, and the gate using it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from drgrade.cli import main
from drgrade.data import DRDataModule
from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import UNKNOWN, FundusDataset
from drgrade.data.images import write_rgb
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.quality import QualityLimits
from drgrade.data.sources import Record, write_layouts
from drgrade.data.sources.eyeq import degrade
from drgrade.data.sources.eyeq import read as read_eyeq
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.tasks.quality import GradabilityLoss, QualityModel
from tests.conftest import ROOT, TINY, TINY_TRAIN


@pytest.fixture(scope="module")
def eyeq(tmp_path_factory) -> Path:
    """A synthetic EyeQ download: 90 photographs in EyeQ's proportions, rejects degraded."""
    return write_layouts(tmp_path_factory.mktemp("eyeq"), {"eyeq": 90}, 128, 0)[0]


def test_eyeq_reader_keeps_graded_photographs_and_lists_the_rejects(eyeq):
    found = read_eyeq(eyeq, verify_images=False)
    levels = {r.gradability for r in found.records}
    assert levels == {"good", "usable"} and all(0 <= r.grade <= 4 for r in found.records)
    assert found.excluded and all(e.record.gradability == "reject" for e in found.excluded)
    assert all("EyeQ graders (quality 2)" in e.reason and e.kind == "dataset" for e in found.excluded)
    assert len(found.records) + len(found.excluded) == 90
    assert {r.official_split for r in found.records} == {"train", "test"}
    assert all(r.patient_id.startswith("eyepacs:") for r in found.records)  # grouped with EyePACS copies


def test_gradability_target_labels_every_level(eyeq):
    data = DRDataModule(
        roots={"eyeq": str(eyeq)}, target="gradability", image_size=64, num_workers=0, cache=False
    )
    data.load_records()
    assert len(data.records) == 90  # the rejects are the quality model's positives, not left out
    assert {r.grade for r in data.records} == {0, 1, 2}


def test_a_two_level_label_counts_good_or_usable():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 0.0, 3.0]])
    probabilities = logits.softmax(-1)
    loss = GradabilityLoss()(logits, torch.tensor([3, 2]))  # gradable, reject
    expected = -(math.log(probabilities[0, 0] + probabilities[0, 1]) + math.log(probabilities[1, 2])) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_the_dataset_asks_the_learned_gate(tmp_path):
    """What the rule gate passes, a quality model may still refuse (``data.quality_model``)."""

    class Refuses:
        def verdict(self, crop: np.ndarray) -> str:
            return f"ungradable: the quality model rejects it ({crop.shape[0]} px crop)"

    image, _ = render_fundus(0, 128, seeded_rng(1, 2, 3))
    write_rgb(tmp_path / "photo.png", image)
    records = [Record(tmp_path / "photo.png", UNKNOWN, "", "photo")]
    dataset = FundusDataset(records, 64, EvalTransform(), keep_errors=True, quality=QualityLimits())
    assert dataset[0]["error"] == ""  # the rule gate passes it
    dataset.quality_model = Refuses()
    assert dataset[0]["error"] == "ungradable: the quality model rejects it (64 px crop)"


def test_quality_model_learns_rejects_and_gates(eyeq, tmp_path):
    """A few epochs on synthetic labels (degraded copies = reject): far above chance on new photographs."""
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "quality.yaml"),
            "--config",
            str(TINY),
            "--config",
            str(TINY_TRAIN),
            "--data.roots.eyeq",
            str(eyeq),
            "--trainer.max_epochs",
            "5",
            "--data.batch_size",
            "16",
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
        ]
    )
    checkpoint = next((tmp_path / "runs").rglob("best-*.ckpt"))
    model = QualityModel(checkpoint)
    rng = np.random.default_rng(5)
    good = [render_fundus(i % 5, 128, seeded_rng(77, 8, i))[0] for i in range(12)]
    bad = [degrade(image, rng) for image in good]  # new photographs, degraded as EyeQ's rejects

    def p_reject(images: list[np.ndarray]) -> np.ndarray:
        return np.array([model.probabilities(preprocess_fundus(image, 96))[2] for image in images])

    # chance is an AUC of 0.5: the model ranks the degraded copies above the photographs they came from
    assert roc_auc_score([0] * len(good) + [1] * len(bad), np.r_[p_reject(good), p_reject(bad)]) >= 0.75
    assert any(model.verdict(preprocess_fundus(image, 96)) for image in bad)
    out = tmp_path / "gate"
    main(["gate", "--data.roots.eyeq", str(eyeq), "--data.quality_model", str(checkpoint), "--out", str(out)])
    result = json.loads((out / "gate.json").read_text())
    assert result["images"] == 90 and result["sensitivity"] is not None
