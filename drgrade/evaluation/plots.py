"""Matplotlib figures: confusion matrix, one-vs-rest ROC curves, attention overlays, lesion mass."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from drgrade.grades import GRADE_NAMES


def draw_confusion(ax, confusion: np.ndarray, title: str = "") -> None:
    """Row-normalised colours with raw counts written in each cell.

    Args:
        ax: the axes to draw on.
        confusion: counts, rows true grade, columns predicted grade.
        title: the axes title.
    """
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
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
        ax.set_title(title)


def confusion_figure(confusion: torch.Tensor, title: str = "Confusion matrix") -> Figure:
    """One confusion matrix as a figure.

    Args:
        confusion: counts [K, K].
        title: the figure title.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5))
    draw_confusion(ax, confusion.numpy(), title)
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


def overlay(image: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """An attention map in the jet colour map blended over an RGB uint8 image, as floats in [0, 1].

    Args:
        image: HxWx3 uint8 RGB.
        attention: HxW in [0, 1].
    """
    heat = plt.get_cmap("jet")(attention)[..., :3]
    return (0.55 * image / 255.0 + 0.45 * heat).clip(0, 1)


def overlay_figure(image: np.ndarray, attention: np.ndarray, heading: str, caption: str) -> Figure:
    """Input and overlay side by side.

    Args:
        image: the preprocessed input, HxWx3 uint8.
        attention: its map in [0, 1].
        heading: the overlay's title (model and method).
        caption: the figure's title (true and predicted grade).
    """
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
    axes[0].imshow(image)
    axes[0].set_title("input (preprocessed)", fontsize=9)
    axes[1].imshow(overlay(image, attention))
    axes[1].set_title(heading, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(caption, fontsize=10)
    fig.tight_layout()
    return fig


def comparison_figure(images: list[np.ndarray], titles: list[str], columns: dict[str, list]) -> Figure:
    """Rows of images, columns: the input then each model's overlay (the paper's Figure 1).

    Args:
        images: the preprocessed inputs, one per row.
        titles: the input column's titles.
        columns: model name -> per row (attention map, overlay title).
    """
    fig, axes = plt.subplots(
        len(images), len(columns) + 1, figsize=(3 * (len(columns) + 1), 3.1 * len(images)), squeeze=False
    )
    for row, (image, title) in enumerate(zip(images, titles, strict=True)):
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(title, fontsize=9)
        for col, cells in enumerate(columns.values(), start=1):
            attention, caption = cells[row]
            axes[row, col].imshow(overlay(image, attention))
            axes[row, col].set_title(caption, fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def lesion_mass_figure(summary: dict) -> Figure:
    """Bars of attention mass on lesions per model, against a uniform map's (the lesions' area).

    Args:
        summary: model -> {"mean": ...}, plus ``uniform_baseline``.
    """
    names = [n for n in summary if n != "uniform_baseline"]
    baseline = summary["uniform_baseline"]
    means = [summary[n]["mean"] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.6))
    bars = ax.bar(names, means, color="tab:blue")
    for bar, mean in zip(bars, means, strict=True):
        ax.annotate(
            f"{mean:.1%} ({mean / baseline:.1f}x)",
            (bar.get_x() + bar.get_width() / 2, mean),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(baseline, color="k", linestyle="--", label=f"uniform map: {baseline:.1%} (lesion area)")
    ax.set_ylabel("attention mass inside lesions")
    ax.set_ylim(0, 1.3 * max(*means, baseline))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
