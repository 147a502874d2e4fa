"""Pictures of images: attention overlays, the model comparison sheet, lesion mass, the web page's cards.

Attention is drawn in a perceptually uniform colour map (``inferno``: dark = least attended,
bright = most), only over the fundus (the black surround is left black: the model's attention
there means nothing), always with a colour bar saying what the colours mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import cm
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from drgrade.data.preprocess import brightest_channel
from drgrade.grades import GRADE_NAMES

#: The attention colour map and how its colour bar is labelled.
ATTENTION_MAP = "inferno"
ATTENTION_LABEL = "attention (0 least, 1 most)"


def display_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised network inputs [B, 3, S, S] back to RGB uint8 [B, S, S, 3] for drawing.

    Args:
        images: a normalised batch.
        mean: the per-channel mean it was normalised with (0-1 scale).
        std: the per-channel standard deviation (0-1 scale).
    """
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    pixels = ((images.float() * std_t + mean_t) * 255).round().clamp(0, 255)
    return pixels.byte().permute(0, 2, 3, 1).cpu().numpy()


def overlay(image: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """The attention map blended over the fundus of an RGB uint8 image (the surround left as it is).

    Args:
        image: HxWx3 uint8 RGB.
        attention: HxW in [0, 1].
    """
    heat = plt.get_cmap(ATTENTION_MAP)(attention)[..., :3]
    fundus = (brightest_channel(image) > 10)[..., None]
    blended = 0.45 * image / 255.0 + 0.55 * heat
    return np.where(fundus, blended, image / 255.0).clip(0, 1)


def attention_bar(fig: Figure, axes) -> None:
    """A colour bar for attention overlays beside ``axes``."""
    mappable = cm.ScalarMappable(norm=Normalize(0, 1), cmap=ATTENTION_MAP)
    bar = fig.colorbar(mappable, ax=axes, fraction=0.046, pad=0.02)
    bar.set_label(ATTENTION_LABEL, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def overlay_figure(image: np.ndarray, attention: np.ndarray, heading: str, caption: str) -> Figure:
    """Input and overlay side by side, with the colour bar.

    Args:
        image: the preprocessed input, HxWx3 uint8.
        attention: its map in [0, 1].
        heading: the overlay's title (model and method).
        caption: the figure's title (true and predicted grade).
    """
    fig, axes = plt.subplots(1, 2, figsize=(7.4, 3.6), layout="constrained")
    axes[0].imshow(image)
    axes[0].set_title("input (preprocessed)", fontsize=9)
    axes[1].imshow(overlay(image, attention))
    axes[1].set_title(heading, fontsize=9)
    for ax in axes:
        ax.axis("off")
    attention_bar(fig, axes[1])
    fig.suptitle(caption, fontsize=10)
    return fig


def comparison_figure(
    images: list[np.ndarray], labels: list[str], columns: dict[str, list], masks: list[np.ndarray | None]
) -> Figure:
    """Rows of images, columns: the input then each model's overlay (the paper's Figure 1).

    Args:
        images: the preprocessed inputs, one per row.
        labels: each row's label (file and true grade), written beside it.
        columns: model name -> per row (attention map, caption).
        masks: each row's lesion mask (outlined in cyan on every panel), or None.
    """
    rows, cols = len(images), len(columns) + 1
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.7 * cols + 1, 2.8 * rows), squeeze=False, layout="constrained"
    )
    for row, (image, label, mask) in enumerate(zip(images, labels, masks, strict=True)):
        panels = [(image / 255.0, "input")] + [
            (overlay(image, cells[row][0]), cells[row][1]) for cells in columns.values()
        ]
        for col, (picture, caption) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(picture)
            if mask is not None and mask.any():
                ax.contour(mask > 0, levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(caption, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=8)
    attention_bar(fig, axes[:, -1].tolist())
    fig.suptitle("Where each model looks (cyan: lesion outlines where the data has masks)", fontsize=10)
    return fig


def lesion_mass_figure(summary: dict) -> Figure:
    """Bars of attention mass on lesions per model, against a uniform map's (the lesions' area).

    Args:
        summary: model -> {"mean": ..., "n": ...}, plus ``uniform_baseline``.
    """
    names = [n for n in summary if n != "uniform_baseline"]
    baseline = 100 * summary["uniform_baseline"]
    means = [100 * summary[n]["mean"] for n in names]
    counts = {summary[n]["n"] for n in names}
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.8), layout="constrained")
    bars = ax.bar(names, means, color="tab:blue")
    for bar, mean in zip(bars, means, strict=True):
        label = f"{mean:.1f}% ({mean / baseline:.1f}x)"
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, mean), ha="center", va="bottom", fontsize=8)
    ax.axhline(baseline, color="k", linestyle="--", label=f"uniform map: {baseline:.1f}% (the lesions' area)")
    ax.set_ylabel("attention inside lesions (%)")
    ax.set_ylim(0, 1.3 * max(*means, baseline))
    ax.legend(fontsize=8)
    ax.set_title(
        f"Share of attention on lesions (n = {', '.join(map(str, sorted(counts)))} images)", fontsize=10
    )
    return fig


def answer_card(
    probabilities: Sequence[float], grade: int, image: np.ndarray, attention: np.ndarray | None
) -> Figure:
    """The web page's picture of one graded image: input, attention (if any) with its bar, probabilities.

    Args:
        probabilities: one per grade.
        grade: the decided grade (its bar is red).
        image: the preprocessed input, HxWx3 uint8.
        attention: its attention map in [0, 1], or None (an ONNX model has none).
    """
    panels = 2 if attention is None else 3
    ratios = [1] * (panels - 1) + [1.3]
    fig, axes = plt.subplots(
        1, panels, figsize=(2.3 * panels + 1.2, 2.3), width_ratios=ratios, layout="constrained"
    )
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=8)
    if attention is not None:
        axes[1].imshow(overlay(image, attention))
        axes[1].set_title("attention", fontsize=8)
        attention_bar(fig, axes[1])
    for ax in axes[:-1]:
        ax.axis("off")
    bars = axes[-1]
    colours = ["tab:red" if g == grade else "tab:gray" for g in range(len(GRADE_NAMES))]
    bars.barh(GRADE_NAMES, probabilities, color=colours)
    bars.set_xlim(0, 1)
    bars.invert_yaxis()
    bars.tick_params(labelsize=7)
    bars.set_xlabel("probability", fontsize=8)
    return fig
