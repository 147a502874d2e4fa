"""CLIP-Adapter: a residual bottleneck MLP on frozen embeddings, blended with the zero-shot classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from drgrade.embeddings import Embeddings
from drgrade.evaluation.bootstrap import BootstrapSpec
from drgrade.protocols.adapters import ADAPTERS, ClipAdapter
from drgrade.protocols.evaluate import evaluate_adapter
from drgrade.protocols.spec import ADAPTATION_MODELS


def grades_in_clusters(seed: int = 0, width: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, width)) * 3

    def draw(n):
        grades = np.arange(n) % 5
        return (centres[grades] + rng.normal(size=(n, width))).astype(np.float32), grades

    return rng, draw(60), draw(30), draw(30)


def test_clip_adapter_learns_what_a_weak_text_classifier_misses_and_chooses_on_validation():
    rng, (train, ty), (val, vy), (test, sy) = grades_in_clusters(seed=2)
    # a text classifier pointing only roughly at each grade's embeddings, as a weak zero-shot prompt does
    text = np.stack([train[ty == k].mean(0) for k in range(5)]) + 8 * rng.normal(size=(5, 16))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    zero_shot = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ text.T
    assert (zero_shot.argmax(1) == sy).mean() < 0.7
    adapter = ClipAdapter(seed=0).fit(train, ty, val, vy, text_classifiers={"weak": text.tolist()})
    assert (adapter.logits(test).argmax(1) == sy).mean() > 0.85
    assert adapter.choices["template_set"] == "weak" and adapter.choices["ratio"] in ClipAdapter.RATIOS
    # the logits are the residual blend, classified by the frozen text classifier at the logit scale
    f = torch.nn.functional.normalize(torch.from_numpy(test), dim=1)
    with torch.no_grad():
        blend = adapter.ratio * adapter.adapter(f) + (1 - adapter.ratio) * f
    expected = 100.0 * torch.nn.functional.normalize(blend, dim=1) @ torch.tensor(text, dtype=torch.float32).T
    assert np.allclose(adapter.logits(test), expected.numpy(), atol=1e-4)
    again = ClipAdapter(seed=0).fit(train, ty, val, vy, text_classifiers={"weak": text.tolist()})
    assert np.array_equal(again.logits(test), adapter.logits(test))  # seeded: the same adapter


def test_clip_adapter_without_a_text_tower_refines_grade_prototypes_and_is_a_protocol_model():
    _, (train, ty), (val, vy), (test, sy) = grades_in_clusters(seed=1)
    adapter = ClipAdapter().fit(train, ty, val, vy, text_classifiers=None, logit_scale=10.0)
    assert adapter.choices["template_set"] == "prototypes"
    assert (adapter.logits(test).argmax(1) == sy).mean() > 0.8
    assert ADAPTERS["clip_adapter"] is ClipAdapter and "clip_adapter" in ADAPTATION_MODELS


def test_clip_adapter_is_evaluated_like_every_protocol_model(tmp_path):
    _, (train, ty), (val, vy), (test, sy) = grades_in_clusters(seed=3)
    vectors = np.concatenate([train, val, test])
    grades = np.concatenate([ty, vy, sy])
    frame = pd.DataFrame(
        {
            "file": [f"img{i}.png" for i in range(len(grades))],
            "source": "aptos2019",
            "patient": [f"p{i}" for i in range(len(grades))],
            "grade": grades,
            "embedding": list(vectors),
        }
    )
    splits = ["train"] * len(ty) + ["val"] * len(vy) + ["test"] * len(sy)
    embeddings = Embeddings(frame, {"identity": {"backbone": "synthetic"}, "logit_scale": 10.0})
    document = evaluate_adapter("clip_adapter", embeddings, splits, tmp_path, seed=0, spec=BootstrapSpec(20))
    assert document["model_name"] == "CLIP-Adapter" and document["adaptation"]["ratio"] in ClipAdapter.RATIOS
    assert document["metrics"]["num_images"] == len(sy) and document["metrics"]["qwk"] > 0.8
    assert (tmp_path / "predictions.csv").is_file()
