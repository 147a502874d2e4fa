"""Calibration told as it is: a worse ECE said, an ensemble's "before" labelled, sparse bins hollow."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_rgba

from drgrade.callbacks.evaluation import split_figures
from drgrade.decision.rule import DecisionRule
from drgrade.evaluation.clinical import referral_curves, reliability_table
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.summary import calibration_section
from drgrade.reporting.plots import reliability_figure
from drgrade.reporting.tables import calibration_table
from drgrade.tasks import EnsembleCLIP


def calibration_run(label: str, before: float, after: float, what: str | None = None):
    calibration = {"temperature": 1.3, "ece_before": before, "ece_after": after}
    if what:
        calibration["before"] = what
    document = {"calibration_error": calibration, "referral": {"auc_accuracy": {"entropy": 0.5}}}
    return SimpleNamespace(directory=Path(label), label=label, document=document, intervals={}, metrics={})


def test_the_table_says_when_temperature_scaling_made_ece_worse_and_what_before_was():
    runs = [
        calibration_run("FCN-CLIP", 0.095, 0.098),
        calibration_run("Ensemble", 0.090, 0.131, "after each member's own temperature"),
        calibration_run("Ranking", 0.120, 0.060),
    ]
    header, *rows = calibration_table(runs)
    said = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    column = "Temperature scaling on this split"
    assert said["FCN-CLIP"][column] == "worsened ECE (+0.003)"
    assert said["Ensemble"][column] == "worsened ECE (+0.041)"
    assert said["Ranking"][column] == "improved ECE (-0.060)"
    assert said["Ensemble"]["ECE before"] == "0.090 (after each member's own temperature)"
    assert said["FCN-CLIP"]["ECE before"] == "0.095"


def sample(n=300, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 5, n)
    logits = rng.normal(size=(n, 5)) + 1.5 * np.eye(5)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, targets


def test_a_thresholded_rule_s_diagram_shows_the_decided_grade_and_sparse_bins_are_hollow():
    probs, targets = sample()
    decided = np.where(probs[:, 1] > 0.15, 1, probs.argmax(1))  # a thresholded rule deciding Mild more
    figure = reliability_figure(probs, probs, targets, "t", decided=decided)
    ax = figure.axes[0]
    table = reliability_table(probs, targets, decided=decided)
    blue = to_rgba("tab:blue")
    filled = [p for p in ax.patches if p.get_facecolor()[:3] == blue[:3]]
    hollow = [p for p in ax.patches if p.get_facecolor()[3] == 0 and p.get_edgecolor()[:3] == blue[:3]]
    sparse = table["count"] < 5
    assert len(filled) == (~sparse).sum() and len(hollow) == sparse.sum()
    heights = sorted(p.get_height() for p in filled)
    assert heights == sorted(np.nan_to_num(table["accuracy"][~sparse]))  # the decided grade's accuracy
    argmax = reliability_table(probs, targets)
    assert not np.allclose(np.nan_to_num(argmax["accuracy"]), np.nan_to_num(table["accuracy"]))
    counts = {t.get_text() for t in ax.texts}
    assert {str(int(c)) for c in table["count"][sparse & (table["count"] > 0)]} <= counts
    assert "decided grade" in ax.get_ylabel()
    plt.close(figure)


def test_the_run_s_diagram_uses_the_rule_s_grades_when_it_is_thresholded():
    probs, targets = sample(seed=1)
    rule = DecisionRule("none")
    rule.thresholds.copy_(torch.tensor([0.5, 0.05, 0.2, 0.2, 0.2]))
    logits = torch.tensor(np.log(probs), dtype=torch.float32)
    outputs = rule(logits)
    targets_t = torch.tensor(targets)
    evaluation = compute_metrics(outputs.probabilities, targets_t, outputs.grade)
    argmax = compute_metrics(outputs.probabilities, targets_t, outputs.probabilities.argmax(1))
    index = torch.arange(len(targets))
    result = SplitResult("test", logits, outputs, None, targets_t, index, index, evaluation, argmax)
    referral = referral_curves(
        outputs.probabilities.double().numpy(), targets, outputs.grade.numpy(), outputs.uncertainty.numpy()
    )
    document = {"decision": "thresholded", "referral": referral, "calibration_error": {"before": "x"}}
    figures = split_figures(result, document, "Ranking, test")
    assert "decided grade" in figures["reliability_diagram"].axes[0].get_ylabel()
    plt.close("all")
    section = calibration_section(result, 1.0, EnsembleCLIP.before_temperature)
    assert section["before"] == "after each member's own temperature"  # what metrics.json says
    assert calibration_section(result, 1.0)["before"] == "softmax of the logits, no temperature"
