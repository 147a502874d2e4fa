"""Printed cuts can be reused: full precision, and how many images a hair's breadth decides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from drgrade.decision.rule import DecisionRule
from drgrade.evaluation.clinical import apply_operating_points
from drgrade.reporting.tables import operating_point_table


def crowded_case():
    """Zero-shot-like scores packed into 0.41069-0.41428, and a cut in the middle of them."""
    rng = np.random.default_rng(1)
    n = 200
    p_referable = rng.uniform(0.41069, 0.41428, n)
    targets = np.where(rng.random(n) < 0.3, 2, 0)
    probs = np.zeros((n, 5))
    probs[:, 0], probs[:, 2] = 1 - p_referable, p_referable
    rule = DecisionRule("none")
    rule.operating_cuts.copy_(torch.tensor([0.412345678, float("nan"), float("nan"), float("nan")]))
    flags = rule.operating_flags(torch.tensor(probs, dtype=torch.float32)).numpy()
    points = apply_operating_points(flags, targets, rule.describe()["operating_points"], probs)
    return probs, targets, points


def test_the_printed_cut_gives_the_reported_figures_again():
    probs, targets, points = crowded_case()
    run = SimpleNamespace(directory=Path("run"), label="Zero-shot [test, argmax]", document={})
    run.document["operating_points"] = points
    header, row = operating_point_table([run])
    printed = float(row[header.index("Cut (from validation, full precision)")])
    assert printed == points[0]["threshold"]  # not 0.412: every digit of the stored cut
    flagged = probs[:, 2] >= np.float32(printed)
    positive = targets >= 2
    assert (flagged & positive).sum() / positive.sum() == points[0]["sensitivity"]
    assert (~flagged & ~positive).sum() / (~positive).sum() == points[0]["specificity"]
    rounded = probs[:, 2] >= round(printed, 3)  # what a 3-decimal cut would have flagged instead
    assert (rounded != flagged).sum() > 10


def test_images_within_the_margin_of_a_cut_are_counted_and_shown():
    probs, _, points = crowded_case()
    expected = int((np.abs(probs[:, 2] - points[0]["threshold"]) <= 1e-3).sum())
    assert points[0]["near_cut"] == expected and points[0]["near_cut_margin"] == 1e-3
    assert expected > 50  # most of these scores sit within 0.001 of the cut
    run = SimpleNamespace(directory=Path("run"), label="Zero-shot [test, argmax]", document={})
    run.document["operating_points"] = points
    header, row = operating_point_table([run])
    assert row[header.index("Images within margin of the cut")] == f"{expected} (±0.001)"
