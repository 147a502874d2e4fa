"""Matplotlib figures of an evaluation: confusion matrix and one-vs-rest ROC curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from drgrade.grades import GRADE_NAMES


def draw_confusion(ax, confusion: np.ndarray, title: str = "") -> None:
    """Row-normalised colours with raw counts written in each cell."""
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
    fig, ax = plt.subplots(figsize=(5.5, 5))
    draw_confusion(ax, confusion.numpy(), title)
    fig.tight_layout()
    return fig


def roc_figure(roc: list, aurocs: list[float | None], title: str = "One-vs-rest ROC") -> Figure:
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
