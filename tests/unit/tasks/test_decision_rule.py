"""The decision rule: fitted on validation logits, the one place it is applied, the same on every path."""

from __future__ import annotations

import math

import pytest
import torch

from drgrade.decision.rule import DecisionRule
from drgrade.grades import REFERABLE_FROM
from drgrade.tasks import FCNCLIP, EnsembleCLIP, RankingCLIP, ZeroShotCLIP


def test_forward_is_softmax_over_temperature_then_thresholds_then_cuts():
    rule = DecisionRule("none")
    rule.temperature.fill_(2.0)
    rule.thresholds.copy_(torch.tensor([0.5, 0.1, 0.2, 0.1, 0.1]))
    rule.operating_cuts.copy_(torch.tensor([0.3, 0.6, float("nan"), 0.5]))
    rule.uncertainty_cutoff.fill_(1.0)
    logits = torch.randn(50, 5) * 3
    out = rule(logits)
    probs = (logits / 2.0).softmax(1)
    assert torch.allclose(out.probabilities, probs)
    assert torch.equal(out.grade, (probs / rule.thresholds).argmax(1))
    p_referable = probs[:, REFERABLE_FROM:].sum(1)
    assert torch.allclose(out.p_referable, p_referable)
    assert torch.equal(out.referable_by_grade, out.grade >= REFERABLE_FROM)
    assert torch.equal(out.referable_by_score, p_referable >= 0.3)
    entropy = -(probs.double() * probs.double().log()).sum(1)
    assert torch.allclose(out.uncertainty, entropy) and torch.equal(out.refer_to_grader, entropy > 1.0)


def test_without_a_referable_cut_the_score_flag_falls_back_to_the_grade():
    rule = DecisionRule("none")  # cuts NaN: validation had no referable eye
    out = rule(torch.randn(30, 5) * 3)
    assert torch.equal(out.referable_by_score, out.referable_by_grade)


def test_fit_recovers_a_known_temperature_and_meets_the_operating_targets():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3000, 5, generator=generator) * 2
    targets = torch.multinomial(logits.softmax(1), 1, generator=generator).flatten()
    rule = DecisionRule("none", target_sensitivity=0.9)
    out = rule.fit(3 * logits, targets, torch.arange(len(targets)))
    assert float(rule.temperature) == pytest.approx(3.0, rel=0.1)
    positive = targets >= REFERABLE_FROM
    flags = rule.operating_flags(out.probabilities)
    assert float(flags[positive, 0].float().mean()) >= 0.9  # referable high-sensitivity point
    assert 0 < float(rule.uncertainty_cutoff) < math.log(5)


def test_zero_shot_validation_stores_logits_for_the_rule_to_fit_on():
    """Zero-shot once stored probabilities for validation: its temperature and cuts fitted the wrong scale."""
    task = ZeroShotCLIP("RN-tiny", None, 96)
    images, labels = torch.randn(4, 3, 96, 96), torch.tensor([0, 1, 2, 4])
    with torch.no_grad():
        task.evaluation_step(
            {"image": images, "label": labels, "index": torch.arange(4), "group": torch.arange(4)}, "val"
        )
        expected = task.all_logits(images).permute(1, 0, 2).flatten(1)  # every template set's logits
    stored, targets, *_ = task.store.compute()
    assert torch.allclose(stored, expected) and torch.equal(targets, labels)


def test_the_ensemble_decides_alike_with_and_without_attention_maps(tmp_path):
    """The attention path (web page, explain) once skipped the ensemble's own temperature."""
    import lightning as L

    members = []
    makers = (
        lambda: FCNCLIP("RN-tiny", None, 96, decoder_widths=(8, 8, 8)),
        lambda: RankingCLIP("RN-tiny", None, 96),
    )
    for i, make in enumerate(makers):
        torch.manual_seed(i)
        member = make().eval()
        member.rule.temperature.fill_(0.5 + i)
        trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.strategy.connect(member)
        trainer.save_checkpoint(tmp_path / f"m{i}.ckpt")
        members.append(str(tmp_path / f"m{i}.ckpt"))
    ensemble = EnsembleCLIP(members, image_size=96)
    ensemble.load_submodules()
    ensemble.eval()
    ensemble.rule.temperature.fill_(3.0)
    images = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        predicted = ensemble.rule(ensemble(images)).probabilities
        mean_of_members = ensemble(images).softmax(1)
    shown = ensemble.rule(ensemble.attention_maps(images)[1]).probabilities
    assert torch.allclose(shown, predicted, atol=1e-5)
    assert not torch.allclose(shown, mean_of_members, atol=1e-3)  # the ensemble's own temperature applies
