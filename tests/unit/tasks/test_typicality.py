"""The model's typicality check: a Mahalanobis distance on its pooled embedding, fitted by ``fit``.

Fitted on synthetic fundus photographs, it must refuse pictures that are not (fed to it past the
rule gate) and pass held-out synthetic photographs; its refusal must reach ``predict``, the ONNX
runner and the web page, with the distance and the cut in the reason.
"""

from __future__ import annotations

import csv

import numpy as np
import onnx
import pytest
import torch
from skimage import data as skdata
from sklearn.covariance import LedoitWolf

from drgrade.data.augment import EvalTransform
from drgrade.data.images import write_rgb
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.decision.typicality import Typicality, ledoit_wolf
from drgrade.errors import ModelFileError
from drgrade.serving.export import export_onnx
from drgrade.serving.runner import OnnxGrader
from drgrade.serving.screening import screen_files
from drgrade.tasks import load_task
from tests.conftest import predict_folder, with_typicality_cut

SIZE = 96  # tests/conf/tiny.yaml's image size
NOT_FUNDUS = {
    "astronaut": skdata.astronaut(),
    "checkerboard": np.repeat(skdata.checkerboard()[..., None], 3, -1),
    "coffee": skdata.coffee(),
    "cat": skdata.chelsea(),
}
REFUSED = "ungradable: unlike any training photograph (distance "


def held_out(count: int) -> list[np.ndarray]:
    """Synthetic photographs the model never saw (another seed than the fixture's)."""
    return [render_fundus(i % 5, 128, seeded_rng(99, 5, i))[0] for i in range(count)]


def distances(task, images: list[np.ndarray]) -> torch.Tensor:
    transform = EvalTransform(task.normalisation())
    batch = torch.stack([transform(preprocess_fundus(image, SIZE), 0) for image in images])
    with torch.no_grad():
        return task.typicality(task.embedding(batch))


def test_ledoit_wolf_matches_scikit_learn():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(40, 60)) @ rng.normal(size=(60, 60))
    mean, covariance = ledoit_wolf(samples)
    reference = LedoitWolf().fit(samples)
    assert np.allclose(mean, reference.location_) and np.allclose(covariance, reference.covariance_)


@pytest.fixture(scope="module")
def task(zero_shot_checkpoint):
    """The tiny zero-shot model as ``drgrade fit`` left it (fitted on synthetic photographs)."""
    return load_task(zero_shot_checkpoint).eval()


def test_fitted_check_refuses_non_fundus_and_passes_held_out_photographs(task):
    assert task.typicality.fitted and task.typicality.mean.shape == (task.backbone.embed_dim,)
    cut = float(task.typicality.cut)
    others = distances(task, list(NOT_FUNDUS.values()))
    assert (others > cut).all(), dict(zip(NOT_FUNDUS, others.tolist(), strict=True))
    # a real photograph is unlike every synthetic one this model was fitted on: refused too
    assert float(distances(task, [skdata.retina()])[0]) > cut
    fundus = distances(task, held_out(20))
    assert (fundus <= cut).float().mean() >= 0.9  # the cut is the 99.5th percentile of validation's
    reasons = task.typicality.reasons(torch.cat([others, fundus]))
    assert all(r.startswith(REFUSED) and f"cut {cut:.3g})" in r for r in reasons[: len(NOT_FUNDUS)])


def test_a_checkpoint_without_the_check_loads_and_refuses_nothing():
    check = Typicality()
    check.load_state_dict({})  # a checkpoint written before the check existed
    assert not check.fitted and check(torch.randn(3, 8)).tolist() == [0.0, 0.0, 0.0]
    fitted = Typicality()
    fitted.fit(torch.randn(50, 8), torch.randn(20, 8))
    again = Typicality()
    again.load_state_dict(fitted.state_dict())  # sized from the stored buffers
    assert again.fitted and torch.equal(again.cut, fitted.cut)


@pytest.fixture(scope="module")
def strict_checkpoint(zero_shot_checkpoint, tmp_path_factory):
    """The zero-shot checkpoint with its cut lowered so far that every photograph is atypical."""
    return with_typicality_cut(zero_shot_checkpoint, tmp_path_factory.mktemp("strict") / "strict.ckpt", 1e-6)


@pytest.fixture(scope="module")
def photographs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held_out")
    for i, image in enumerate(held_out(3)):
        write_rgb(folder / f"photo{i}.png", image)
    return folder


def test_predict_and_the_page_refuse_atypical_inputs(
    synthetic, strict_checkpoint, photographs, task, tmp_path
):
    with pytest.raises(SystemExit) as stop:  # nothing graded: exit 2, every reason in the file
        predict_folder("zero_shot", synthetic, tmp_path, strict_checkpoint, photographs)
    assert stop.value.code == 2
    with next(tmp_path.rglob("predictions.csv")).open(newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert len(rows) == 3
    assert all(r["error"].startswith(REFUSED) and r["grade"] == "" for r in rows.values())
    # the refusal is a row without a grade: it goes to a human grader (``drgrade.decision.actions``)
    assert all(r["action"] == "to grader" and r["refer_to_grader"] == "1" for r in rows.values())
    cut = float(task.typicality.cut)
    task.typicality.cut.fill_(1e-6)  # as the strict checkpoint's
    try:
        answers = screen_files(task, sorted(photographs.iterdir()), SIZE)
    finally:
        task.typicality.cut.fill_(cut)
    assert all(a.row.error.startswith(REFUSED) and a.row.decision is None for a in answers)
    assert {a.row.action for a in answers} == {"to grader"}


def test_onnx_graph_carries_the_check(task, photographs, tmp_path):
    grader = OnnxGrader(export_onnx(task, tmp_path / "m.onnx", SIZE))
    assert grader.cut == pytest.approx(float(task.typicality.cut))
    images = [grader.tensor(image) for image in [*held_out(3), NOT_FUNDUS["astronaut"]]]
    ours = distances(task, [*held_out(3), NOT_FUNDUS["astronaut"]]).numpy()
    assert np.abs(grader.run(np.stack(images))[-1] - ours).max() < 1e-3 * max(1.0, ours.max())
    graded = grader.grade_files(sorted(photographs.iterdir()))
    grader.cut = 1e-6  # as the strict checkpoint's cut: the runner refuses every photograph
    refused = grader.grade_files(sorted(photographs.iterdir()))
    assert all(row.error.startswith(REFUSED) and row.decision is None for row in refused)
    assert {row.action for row in refused} == {"to grader"}
    assert sum(row.decision is not None for row in graded) >= 2  # held-out photographs graded
    model = onnx.load(str(tmp_path / "m.onnx"))  # a distance output whose cut went missing
    next(p for p in model.metadata_props if p.key == "typicality").value = '{"fitted": false}'
    onnx.save(model, str(tmp_path / "no_cut.onnx"))
    with pytest.raises(ModelFileError, match="typicality cut and its 'distance' output"):
        OnnxGrader(tmp_path / "no_cut.onnx")
