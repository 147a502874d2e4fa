"""The small print that changes meaning: macro averages, per-source headers, referral and training curves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.special import softmax

from drgrade.evaluation.bootstrap import BootstrapSpec, confidence_intervals
from drgrade.evaluation.clinical import referral_curves
from drgrade.reporting.markup import md
from drgrade.reporting.plots import curves_figure, referral_figure
from drgrade.reporting.report import per_source_note
from drgrade.reporting.tables import per_source_table


def sample(n=60, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 5, n)
    probs = softmax(rng.normal(size=(n, 5)) + 2 * np.eye(5)[targets], axis=1)
    return probs, targets


def test_a_resample_s_macro_precision_averages_the_split_s_decided_grades():
    """A grade decided once is missing from a third of resamples: those are left out, not averaged over 4."""
    probs, targets = sample()
    preds = np.where(targets == 4, 3, targets)
    preds[0] = 4  # Proliferative decided exactly once
    spec = BootstrapSpec(resamples=300, seed=2)
    _, undefined = confidence_intervals(probs, targets, preds, [str(i) for i in range(60)], spec)
    assert undefined["macro_precision"] >= undefined["precision_proliferative"] > 0.25 * 300


def test_per_source_headers_say_by_grade_and_the_footnote_counts_left_out_resamples():
    part = {
        "metrics": {"num_images": 40, "accuracy": 0.5, "auroc_macro": 0.7, "qwk": 0.3},
        "confidence_intervals": {"auroc_macro": [0.6, 0.8]},
        "undefined_resamples": {"auroc_macro": 891},
    }
    document = {"per_source": {"messidor2": part}, "bootstrap": {"resamples": 2000}}
    run = SimpleNamespace(directory=Path("r"), label="FCN-CLIP [test, argmax]", document=document)
    header = per_source_table([run])[0]
    assert "Referable sensitivity (by grade)" in header and "Referable specificity (by grade)" in header
    note = per_source_note([run])
    assert f"auroc_macro 891 of 2000 ({md(run.label)}, messidor2)" in note  # labels print as literal text


def test_referral_curves_count_what_they_keep_and_mark_the_validation_cut():
    probs, targets = sample(n=200, seed=3)
    entropy = -(probs * np.log(probs)).sum(1)
    cutoff = float(np.quantile(entropy, 0.8))
    curves = referral_curves(probs, targets, probs.argmax(1), entropy, cutoff)
    assert curves["kept"][0] == 200 and curves["kept"][-1] == 100
    assert curves["deployed"]["referred"] == int((entropy > cutoff).sum())
    assert curves["deployed"]["referred_fraction"] == pytest.approx(0.2, abs=0.01)
    figure = referral_figure(curves, "r")
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert "referable sensitivity (by grade)" in titles and "referable specificity (by grade)" in titles
    marked = [line for line in figure.axes[0].lines if line.get_label().startswith("validation cut")]
    assert marked and marked[0].get_xdata()[0] == pytest.approx(100 * curves["deployed"]["referred_fraction"])
    top = [child for ax in figure.axes for child in ax.child_axes]  # the secondary "images kept" axes
    tick_labels = {t.get_text() for ax in top for t in ax.get_xticklabels()}
    assert {"200", "100"} <= tick_labels  # the images kept, on the top axis
    plt.close(figure)


def test_training_curves_mark_the_best_epoch_and_plot_the_selection_metric():
    curves = {
        "train/loss_epoch": {0: 1.0, 1: 0.6, 2: 0.5},
        "val/loss": {0: 1.1, 1: 0.7, 2: 0.8},
        "val/selection_qwk": {0: 0.2, 1: 0.5, 2: 0.4},
    }
    figure = curves_figure(curves, "c", best_epoch=1, monitor="val/selection_qwk")
    assert len(figure.axes) == 3 and "val/selection_qwk" in figure.axes[2].get_ylabel()
    for ax in figure.axes:
        marks = [line for line in ax.lines if line.get_label() == "best epoch 1"]
        assert marks and marks[0].get_xdata()[0] == 1
    plt.close(figure)
