"""Attention follows the rule: a map explains the grade the decision rule decided, the one shown beside it."""

import lightning as L
import torch

from drgrade.tasks import FCNCLIP, EnsembleCLIP, RankingCLIP


def force_grade(task, grade: int) -> None:
    """Thresholds under which the rule decides ``grade`` for every image (p_k / t_k is largest there)."""
    thresholds = torch.ones(5)
    thresholds[grade] = 1e-4
    task.rule.thresholds.copy_(thresholds)
    task.rule.thresholded.fill_(True)


def test_grad_cam_maps_the_thresholded_decision_not_the_argmax():
    torch.manual_seed(0)
    task = RankingCLIP("RN-tiny", None, 64).eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        argmax = task(images).argmax(1)
    decided_grade = int((argmax[0] + 2) % 5)
    force_grade(task, decided_grade)
    maps, logits, method = task.attention_maps(images)
    decided = task.rule(logits).grade
    assert (decided == decided_grade).all() and (decided != argmax).any()
    assert "decided grade" in method
    of_decided, _, _ = task.attention_maps(images, decided)
    of_argmax, _, _ = task.attention_maps(images, argmax)
    assert torch.allclose(maps, of_decided)
    differs = decided != argmax
    assert not torch.allclose(maps[differs], of_argmax[differs], atol=1e-3)


def test_ensemble_members_map_the_ensembles_decided_grade(tmp_path):
    members = []
    for i, make in enumerate(
        (
            lambda: FCNCLIP("RN-tiny", None, 64, decoder_widths=(8, 8, 8)),
            lambda: RankingCLIP("RN-tiny", None, 64),
        )
    ):
        torch.manual_seed(i)
        trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.strategy.connect(make().eval())
        trainer.save_checkpoint(tmp_path / f"m{i}.ckpt")
        members.append(str(tmp_path / f"m{i}.ckpt"))
    ensemble = EnsembleCLIP(members, image_size=64)
    ensemble.load_submodules()
    ensemble.eval()
    images = torch.randn(3, 3, 64, 64)
    force_grade(ensemble, 4)
    ranking = ensemble.members[1]
    with torch.no_grad():
        own = ranking.rule(ranking(images)).grade
    assert (own != 4).any()  # the member alone would explain another grade
    maps, logits, _ = ensemble.attention_maps(images)
    assert (ensemble.rule(logits).grade == 4).all()
    fcn_map = ensemble.members[0].attention_maps(images)[0]  # CBAM: one map whatever the grade
    ranking_map = ranking.attention_maps(images, torch.full((3,), 4))[0]
    expected = ensemble.weights[0] * fcn_map + ensemble.weights[1] * ranking_map
    assert torch.allclose(maps, expected, atol=1e-6)
