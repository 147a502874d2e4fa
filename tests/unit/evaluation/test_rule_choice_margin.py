"""``auto`` keeps fitted thresholds only on evidence: a cross-fitted gain beyond noise."""

from __future__ import annotations

import pytest
import torch

from drgrade.decision.choices import choice_text
from drgrade.decision.rule import DecisionRule
from drgrade.decision.thresholds import choose_objective


def informative(seed: int, n: int, bias: float = 0.0):
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 5, (n,), generator=generator)
    scale, signal = (0.5, 2.0) if bias else (1.0, 1.2)
    logits = torch.randn(n, 5, generator=generator) * scale + signal * torch.nn.functional.one_hot(targets, 5)
    logits[:, 2] -= bias  # a biased model: moderate is rarely the argmax, thresholds restore it
    return logits.softmax(1), targets, torch.arange(n) // 2  # pairs of eyes


def test_a_gain_within_noise_keeps_argmax():
    """90 images, youden ahead by a few thousandths: the old rule took it; its interval spans zero."""
    probs, targets, groups = informative(seed=1, n=90)
    chosen, record = choose_objective(probs, targets, groups)
    assert record["candidate"] == "youden" and 0 < record["gain"] < 0.01
    low, high = record["gain_interval"]
    assert low < 0 < high
    assert chosen == "none" and record["kept"] is False
    assert "not beyond noise: argmax kept" in choice_text(record)


def test_a_gain_beyond_noise_keeps_the_fitted_rule_and_the_rule_records_why():
    probs, targets, groups = informative(seed=0, n=300, bias=2.5)
    rule = DecisionRule("auto")
    rule.fit(probs.log(), targets, groups)
    choice = rule.choice
    assert choice["kept"] and choice["objective"] == choice["candidate"] != "none"
    assert choice["gain"] == pytest.approx(
        choice["crossfit_qwk"][choice["candidate"]] - choice["crossfit_qwk"]["none"]
    )
    assert choice["gain_interval"][0] > 0 and bool(rule.thresholded)
    assert "excludes zero" in choice["rule"] and choice["images"] == 300
    assert "beyond noise" in choice_text(choice) and f"{choice['gain']:+.4f}" in choice_text(choice)
