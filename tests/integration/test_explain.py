import csv
import json
import shutil

import numpy as np
import pytest
import torch

from drgrade.cli import main
from drgrade.evaluation.metrics import lesion_mass_fraction
from drgrade.tasks import FCNCLIP, RankingCLIP, ZeroShotCLIP
from drgrade.tasks.attention import grad_cam, normalise_maps
from tests.conftest import ROOT, cli_args


@pytest.mark.parametrize(
    "make",
    [
        lambda: FCNCLIP("RN-tiny", None, 96, decoder_widths=(32, 16, 8)),
        lambda: RankingCLIP("RN-tiny", None, 96),
        lambda: ZeroShotCLIP("RN-tiny", None, 96, template_sets=["clinical"]),
    ],
)
def test_maps_have_input_size_and_are_finite_and_normalised(make):
    task = make()
    if isinstance(task, ZeroShotCLIP):
        task.selected.fill_(0)
    task.eval()
    images = torch.randn(3, 3, 96, 96)
    maps, logits, method = task.attention_maps(images)
    assert maps.shape == (3, 96, 96) and method
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(3))
    with torch.no_grad():
        assert torch.allclose(logits, task(images), atol=1e-5)  # the decision comes from the same pass
    assert torch.allclose(task.rule(logits).probabilities.sum(1), torch.ones(3), atol=1e-5)


def test_grad_cam_points_at_the_evidence():
    # two feature channels with blobs in different places; only channel 0 drives class 0
    activations = torch.zeros(1, 2, 8, 8)
    activations[0, 0, 1:3, 5:7] = 1.0
    activations[0, 1, 5:7, 1:3] = 1.0

    def scores(a):
        return torch.stack([a[:, 0].sum((1, 2)), a[:, 1].sum((1, 2)) * 0.1], dim=1)

    maps, logits = grad_cam(lambda x: x, scores, activations)
    assert int(logits.argmax()) == 0
    assert maps[0, 1:3, 5:7].min() == 1.0 and maps[0, 5:7, 1:3].max() == 0.0
    target_1, _ = grad_cam(lambda x: x, scores, activations, target=torch.tensor([1]))
    assert target_1[0, 5:7, 1:3].min() == 1.0 and target_1[0, 1:3, 5:7].max() == 0.0


def test_lesion_mass_fraction():
    mask = torch.zeros(1, 10, 10)
    mask[0, :2] = 1  # 20% of the image
    assert float(lesion_mass_fraction(mask, mask)) == 1.0
    assert float(lesion_mass_fraction(torch.ones(1, 10, 10), mask)) == pytest.approx(0.2)
    assert torch.equal(normalise_maps(torch.full((1, 4, 4), 0.5)), torch.ones(1, 4, 4))


def test_explain_cli_overlays_comparison_and_unreadable_file(
    synthetic, zero_shot_checkpoint, tmp_path, capsys
):
    main(cli_args("fit", "fcn_clip", synthetic, tmp_path / "runs", "--trainer.max_epochs", "1"))
    fcn = next((tmp_path / "runs").glob("version_0/checkpoints/best-*.ckpt"))
    ranking = zero_shot_checkpoint  # a Grad-CAM model, already fitted for the session

    main(
        [
            *cli_args("explain", "fcn_clip", synthetic, tmp_path / "runs"),
            "--out",
            str(tmp_path / "x"),
            "--compare",
            str(fcn),
            str(ranking),
            "--limit",
            "12",
        ]
    )
    summary = json.loads((tmp_path / "x" / "lesion_mass.json").read_text())
    assert set(summary) == {"FCN-CLIP", "Zero-shot", "uniform_baseline"}
    assert 0 < summary["uniform_baseline"] < 0.2 and all(
        0 <= summary[m]["mean"] <= 1 for m in ("FCN-CLIP", "Zero-shot")
    )
    assert len(list((tmp_path / "x" / "FCN-CLIP" / "overlays").glob("*.png"))) == 12
    saved = np.load(tmp_path / "x" / "Zero-shot" / "attention.npz")
    assert saved["maps"].shape == (12, 96, 96) and 0 <= saved["maps"].min() <= saved["maps"].max() <= 1
    assert (tmp_path / "x" / "comparison.png").stat().st_size > 0
    assert "of attention inside lesions" in capsys.readouterr().out

    folder = tmp_path / "folder"
    folder.mkdir()
    for sub, path in zip("ab", sorted((synthetic / "aptos2019" / "train_images").iterdir())[:2], strict=True):
        (folder / sub).mkdir()
        shutil.copy(path, folder / sub / "same.png")  # two files of one name: two overlays
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    main(
        [
            *cli_args("explain", "fcn_clip", synthetic, tmp_path / "runs"),
            "--out",
            str(tmp_path / "y"),
            "--ckpt_path",
            str(fcn),
            "--data.predict_dir",
            str(folder),
        ]
    )
    assert len(list((tmp_path / "y" / "FCN-CLIP" / "overlays").glob("*.png"))) == 2
    rows = list(csv.DictReader((tmp_path / "y" / "FCN-CLIP" / "explain.csv").read_text().splitlines()))
    assert len(rows) == 3 and "not a decodable image" in next(r for r in rows if r["error"])["error"]
    assert all(r["grade"] == "" for r in rows if r["error"]) and all(r["model"] == "FCN-CLIP" for r in rows)


def test_explain_needs_the_zero_shot_choice_from_fit(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*cli_args("explain", "zero_shot", synthetic, tmp_path / "runs"), "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "drgrade fit" in capsys.readouterr().err


def test_explain_compare_takes_the_model_and_size_from_the_checkpoints_not_the_config(
    synthetic, zero_shot_checkpoint, tmp_path, monkeypatch
):
    """The shipped config names RN50 'openai' weights (not here) at 224 px; the checkpoint knows better."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main(
        [
            "explain",
            "--config", str(ROOT / "configs" / "zero_shot.yaml"),
            "--data.roots.aptos2019", str(synthetic / "aptos2019"),
            "--data.roots.messidor2", str(synthetic / "messidor2"),
            "--trainer.default_root_dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "x"),
            "--compare", str(zero_shot_checkpoint),
            "--limit", "3",
        ]
    )  # fmt: skip
    saved = np.load(tmp_path / "x" / "Zero-shot" / "attention.npz")
    assert saved["maps"].shape == (3, 96, 96)
