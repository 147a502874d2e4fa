"""Pictures of images: attention overlays, the model comparison sheet, lesion mass, the web page's cards."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD
from drgrade.grades import GRADE_NAMES
from drgrade.predictions import PredictionRow


def display_images(images: torch.Tensor) -> np.ndarray:
    """Normalised network inputs [B, 3, S, S] back to RGB uint8 [B, S, S, 3] for drawing.

    Args:
        images: CLIP-normalised batch.
    """
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    pixels = ((images.float() * std + mean) * 255).round().clamp(0, 255)
    return pixels.byte().permute(0, 2, 3, 1).cpu().numpy()


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


def answer_card(
    row: PredictionRow, image: np.ndarray | None, attention: np.ndarray | None, method: str
) -> Figure:
    """The attention overlay beside the five probabilities as a bar chart, titled with the verdict.

    Args:
        row: the image's prediction row.
        image: the preprocessed input (None when it was not graded).
        attention: its attention map in [0, 1], or None (an ONNX model has none).
        method: how the map was made.
    """
    fig, (picture, bars) = plt.subplots(1, 2, figsize=(8, 3.6), gridspec_kw={"width_ratios": [1, 1.2]})
    name = Path(row.file).name
    if row.error:
        for ax in (picture, bars):
            ax.axis("off")
        reason = textwrap.fill(row.error.replace(f"{row.file}: ", ""), 60)
        picture.text(0, 0.5, reason, fontsize=10, va="center")
        fig.suptitle(f"{name}: not graded")
        return fig
    shown = image if attention is None else overlay(image, attention)
    picture.imshow(shown)
    picture.set_title(f"attention ({method})" if attention is not None else "input", fontsize=9)
    picture.axis("off")
    decision = row.decision
    colours = ["tab:red" if g == decision.grade else "tab:blue" for g in range(len(GRADE_NAMES))]
    bars.barh(GRADE_NAMES, decision.probabilities, color=colours)
    bars.set_xlim(0, 1)
    bars.invert_yaxis()
    bars.set_xlabel("probability")
    flags = ("REFERABLE" if decision.referable_by_score else "not referable") + (
        ", refer to a grader" if decision.refer_to_grader else ""
    )
    fig.suptitle(
        f"{name}: {GRADE_NAMES[decision.grade]} ({flags}; entropy {decision.uncertainty:.2f})", fontsize=10
    )
    fig.tight_layout()
    return fig
