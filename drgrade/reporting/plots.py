"""The evaluation's figures: confusion matrices, ROC curves, reliability, referral and training curves.

Every figure drgrade draws from numbers lives here (pictures of images are in ``overlays``), so a
run folder, the report and W&B show the same drawings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from drgrade.evaluation.clinical import (
    ECE_BINS,
    expected_calibration_error,
    reliability_table,
    table_calibration_error,
)
from drgrade.files import save_figure
from drgrade.grades import GRADE_NAMES


def draw_confusion(ax, confusion: np.ndarray, title: str = ""):
    """Colours: the share of each true grade's images (rows sum to 1); numbers: the image counts.

    Args:
        ax: the axes to draw on.
        confusion: counts, rows true grade, columns predicted grade.
        title: the axes title.

    Returns:
        The image, for a colour bar.
    """
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(GRADE_NAMES))
    ax.set_xticks(ticks, GRADE_NAMES, rotation=45, ha="right")
    ax.set_yticks(ticks, GRADE_NAMES)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("true grade")
    for i in ticks:
        for j in ticks:
            ax.text(
                j,
                i,
                int(confusion[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    if title:
        ax.set_title(title, fontsize=9, wrap=True)
    return image


#: The colour bar's label: what the colours of a confusion matrix are.
SHARE_LABEL = "share of the true grade's images (rows sum to 1)"


def confusion_figure(confusion: torch.Tensor, title: str = "Confusion matrix") -> Figure:
    """One confusion matrix as a figure, with its colour bar.

    Args:
        confusion: counts [K, K].
        title: the figure title (the model, split and decision rule).
    """
    fig, ax = plt.subplots(figsize=(6.2, 5))
    image = draw_confusion(ax, confusion.numpy(), title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=SHARE_LABEL)
    fig.tight_layout()
    return fig


def roc_figure(roc: list, aurocs: list[float | None], title: str = "One-vs-rest ROC") -> Figure:
    """One-vs-rest ROC curves of every grade.

    Args:
        roc: per grade (fpr, tpr) or None when the grade is absent.
        aurocs: per grade AUROC or None.
        title: the figure title.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, curve, auc in zip(GRADE_NAMES, roc, aurocs, strict=True):
        if curve is None:
            ax.plot([], [], label=f"{name} (absent)")
            continue
        fpr, tpr = curve
        ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_sheet(runs: Sequence, path: Path) -> None:
    """Every column's confusion matrix, three to a row with one shared colour bar, saved to ``path``."""
    columns = min(3, len(runs))
    rows = -(-len(runs) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.8 * columns + 1, 5.2 * rows), squeeze=False, layout="constrained"
    )
    image = None
    for ax, run in zip(axes.flat, runs, strict=False):
        image = draw_confusion(ax, run.confusion, run.label.replace(" [", "\n["))
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, fraction=0.03, label=SHARE_LABEL)
    fig.suptitle("Confusion matrices: colours are row shares, numbers are image counts", fontsize=11)
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def curves_figure(
    curves: dict[str, dict[int, float]], title: str, best_epoch: int | None = None, monitor: str | None = None
):
    """Loss and accuracy per epoch, training beside validation (the paper's Figures 2-3).

    With the fit's summary: a third panel plots the metric checkpoints were selected by, and every
    panel marks the epoch of the best checkpoint (the one evaluated).

    Args:
        curves: from ``epoch_curves``.
        title: the figure title.
        best_epoch: the best checkpoint's epoch (training.json), or None.
        monitor: the selection metric's logged name (e.g. ``val/selection_qwk``), or None.
    """
    panels = [("loss", ("train/loss_epoch", "val/loss")), ("accuracy", ("train/accuracy", "val/accuracy"))]
    if monitor and curves.get(monitor):
        panels.append((f"selection metric: {monitor}", (monitor,)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    for ax, (quantity, keys) in zip(axes, panels, strict=True):
        for key in keys:
            if curves.get(key):
                epochs = sorted(curves[key])
                ax.plot(epochs, [curves[key][e] for e in epochs], marker="o", label=key.split("/")[0])
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:red", linestyle=":", label=f"best epoch {best_epoch}")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: Bins holding fewer images than this are drawn hollow, with their count: their accuracy is noise.
SPARSE_BIN = 5


def reliability_bars(ax, x: np.ndarray, table: dict, colour: str, label: str) -> None:
    """One set of reliability bars: filled, or hollow with the count above for sparse bins."""
    width = 1.0 / ECE_BINS
    sparse = table["count"] < SPARSE_BIN
    heights = np.nan_to_num(table["accuracy"])
    ax.bar(x[~sparse], heights[~sparse], width=width / 2, color=colour, alpha=0.8, label=label)
    ax.bar(x[sparse], heights[sparse], width=width / 2, facecolor="none", edgecolor=colour, linewidth=1)
    for xi, height, n in zip(x[sparse], heights[sparse], table["count"][sparse], strict=True):
        if n:
            ax.text(xi, height + 0.02, f"{int(n)}", ha="center", fontsize=6, color=colour)


def reliability_figure(
    before: np.ndarray,
    after: np.ndarray,
    targets: np.ndarray,
    title: str,
    decided: np.ndarray | None = None,
    before_label: str = "before temperature scaling",
) -> Figure:
    """Accuracy against confidence per bin, before and after temperature scaling.

    Bins with fewer than ``SPARSE_BIN`` images are hollow, their count written above them.

    Args:
        before: probabilities before temperature scaling [N, K].
        after: probabilities after [N, K].
        targets: true grades [N].
        title: the figure title.
        decided: a thresholded rule's grades [N]: the "after" bars then show the decided grade's
            probability against the decided grade's accuracy (what the rule reports), not the argmax's.
        before_label: what "before" is (an ensemble's is after its members' own temperatures).
    """
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5.2, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    width = 1.0 / ECE_BINS
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    after_label = "after temperature scaling" + (", decided grade" if decided is not None else "")
    for probs, label, colour, shift, grades in (
        (before, before_label, "tab:orange", -0.25, None),
        (after, after_label, "tab:blue", 0.25, decided),
    ):
        table = reliability_table(probs, targets, decided=grades)
        # the argmax's ECE as every table gives it; a decided grade's from its own bins
        ece = expected_calibration_error(probs, targets) if grades is None else table_calibration_error(table)
        x = centres + shift * width
        reliability_bars(ax, x, table, colour, f"{label} (ECE {ece:.3f})")
        counts.bar(x, table["count"], width=width / 2, color=colour, alpha=0.8)
    ax.set_ylabel("accuracy in bin" + (" (blue: of the decided grade)" if decided is not None else ""))
    ax.set_ylim(0, 1.08)
    ax.set_title(title)
    ax.plot([], [], " ", label=f"hollow: under {SPARSE_BIN} images (count above)")
    ax.legend(fontsize=7, loc="upper left")
    counts.set_xlabel(
        "confidence (max probability" + ("; blue: decided grade's)" if decided is not None else ")")
    )
    counts.set_ylabel("images")
    counts.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def patient_panel(ax, curve: dict) -> None:
    """Patients: imageability and referable-DR sensitivity / specificity of the exam decisions."""
    shares = 100 * np.asarray(curve["fractions"])
    for key, style in (
        ("imageability", "-o"),
        ("referable_sensitivity", "-s"),
        ("referable_specificity", "-^"),
    ):
        values = [np.nan if v is None else v for v in curve[key]]
        ax.plot(shares, values, style, markersize=3, label=key.replace("_", " "))
    ax.set_title("patients (exam decisions)")
    ax.set_xlabel("least certain photographs to a grader (%)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


#: The referral curves' panels: (metric key, title); the referable figures are of the decided grades.
REFERRAL_PANELS = (
    ("accuracy", "accuracy"),
    ("qwk", "qwk"),
    ("referable_sensitivity", "referable sensitivity (by grade)"),
    ("referable_specificity", "referable specificity (by grade)"),
)


def referral_figure(referral: dict, title: str) -> Figure:
    """Accuracy, QWK and referable sensitivity / specificity of the kept images vs the referred share.

    With ``referral["patients"]`` a last panel shows the patient level: imageability and the exam
    decisions' sensitivity / specificity as more uncertain photographs go to a grader.
    Each panel marks the share the rule's own entropy cut (fitted on validation) refers on this
    split, and its top axis gives how many images are kept.

    Args:
        referral: the ``referral`` section of metrics.json.
        title: the figure title.
    """
    fractions = 100 * np.asarray(referral["fractions"])
    patients = referral.get("patients")
    panels = len(REFERRAL_PANELS) + (patients is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.9), squeeze=False)
    styles = {"entropy": "-o", "max_probability": "--s"}
    deployed = (referral.get("deployed") or {}).get("referred_fraction")
    kept = referral.get("kept")
    for ax, (key, name) in zip(axes[0][: len(REFERRAL_PANELS)], REFERRAL_PANELS, strict=True):
        for measure, style in styles.items():
            values = [np.nan if v is None else v for v in referral[measure][key]]
            ax.plot(fractions, values, style, markersize=3, label=f"by {measure.replace('_', ' ')}")
        if deployed is not None:
            ax.axvline(
                100 * deployed,
                color="tab:red",
                linewidth=1,
                label=f"validation cut: {100 * deployed:.1f}% here",
            )
        ax.set_title(name)
        ax.set_xlabel("least certain images referred (%)")
        ax.set_ylim(-1.02 if key == "qwk" else 0, 1.02)  # the full scale: small changes look small
        ax.grid(alpha=0.3)
        if kept:
            top = ax.secondary_xaxis("top")
            top.set_xticks(fractions[::2], [str(k) for k in kept[::2]], fontsize=7)
            top.set_xlabel("images kept", fontsize=8)
    axes[0][0].set_ylabel("on the images kept")
    axes[0][0].legend(fontsize=7)
    if patients is not None:
        patient_panel(axes[0][-1], patients)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
