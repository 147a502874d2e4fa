"""Figures of the clinical evaluation: reliability diagram and uncertainty-referral curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from drgrade.evaluation.clinical import ECE_BINS, expected_calibration_error, reliability_table


def reliability_figure(before: np.ndarray, after: np.ndarray, targets: np.ndarray, title: str) -> Figure:
    """Accuracy against confidence per bin, before and after temperature scaling.

    Args:
        before: probabilities before temperature scaling [N, K].
        after: probabilities after [N, K].
        targets: true grades [N].
        title: the figure title.
    """
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5.2, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    width = 1.0 / ECE_BINS
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for probs, label, colour, shift in (
        (before, "before", "tab:orange", -0.25),
        (after, "after", "tab:blue", 0.25),
    ):
        table = reliability_table(probs, targets)
        ece = expected_calibration_error(probs, targets)
        ax.bar(
            centres + shift * width,
            np.nan_to_num(table["accuracy"]),
            width=width / 2,
            color=colour,
            alpha=0.8,
            label=f"{label} temperature scaling (ECE {ece:.3f})",
        )
        counts.bar(centres + shift * width, table["count"], width=width / 2, color=colour, alpha=0.8)
    ax.set_ylabel("accuracy in bin")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    counts.set_xlabel("confidence (max probability)")
    counts.set_ylabel("images")
    counts.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def referral_figure(referral: dict, title: str) -> Figure:
    """Accuracy, QWK and referable sensitivity / specificity of the kept images vs the referred share.

    Args:
        referral: the ``referral`` section of metrics.json.
        title: the figure title.
    """
    fractions = 100 * np.asarray(referral["fractions"])
    keys = ("accuracy", "qwk", "referable_sensitivity", "referable_specificity")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    styles = {"entropy": "-o", "max_probability": "--s"}
    for ax, key in zip(axes[0], keys, strict=True):
        for measure, style in styles.items():
            values = [np.nan if v is None else v for v in referral[measure][key]]
            ax.plot(fractions, values, style, markersize=3, label=f"by {measure.replace('_', ' ')}")
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("least certain images referred (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("on the images kept")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
