"""Zero-shot template ties are broken by a stated figure and reported, not settled by list order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from drgrade.decision.choices import choose_template_set
from drgrade.evaluation.metrics import compute_metrics
from drgrade.reporting.tables import choices_table
from drgrade.tasks import ZeroShotCLIP


def test_a_tie_is_broken_by_macro_auroc_then_list_order():
    best, tie = choose_template_set({"a": 0.0, "b": 0.0, "c": -0.1}, {"a": 0.55, "b": 0.61, "c": 0.9}, "qwk")
    assert best == "b" and tie["tied"] == ["a", "b"] and tie["broken_by"] == "auroc_macro"
    best, tie = choose_template_set({"a": 0.0, "b": 0.0}, {"a": 0.5, "b": 0.5}, "qwk")
    assert best == "a" and tie["then"] == "list order"
    assert choose_template_set({"a": 0.2, "b": None}, {"a": 0.5, "b": 0.9}, "qwk") == ("a", None)


def test_zero_shot_reports_its_four_way_tie_and_chooses_by_the_stated_figure():
    task = ZeroShotCLIP("RN-tiny", None, 96)
    sets = len(task.set_names)
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (60,), generator=generator)
    logits = torch.randn(60, sets, 5, generator=generator)
    logits[:, :, 0] += 20  # every set decides "No DR" for every image: QWK 0.000 for all of them
    logits[:, sets - 1, 1:] += 3 * torch.nn.functional.one_hot(targets, 5)[:, 1:]  # the last ranks best
    task.select(logits, targets)
    aurocs = [
        compute_metrics(logits[:, i].softmax(-1), targets, torch.zeros(60).long()).metrics["auroc_macro"]
        for i in range(sets)
    ]
    assert int(task.selected) == sets - 1 != 0  # list order would have taken the first
    extras = task.split_extras("val")
    tie = extras["template_tie"]
    assert tie["tied"] == task.set_names and tie["score"] == pytest.approx(0.0)
    assert tie["secondary"][task.set_names[-1]] == pytest.approx(max(aurocs))
    run = SimpleNamespace(directory=Path("z"), label="Zero-shot [test, argmax]", document=extras)
    (_, row) = choices_table([run])
    assert row[1] == f"template set: {task.set_names[-1]}"
    assert row[2].startswith(f"{sets}-way tie at qwk 0.0000") and "broken by validation auroc_macro" in row[2]
