"""Synthetic fundus images measured against a real photograph: statistics table and side-by-side figure.

    .venv/bin/python docs/realism.py        # (make docs) writes docs/realism.png, prints the table

The real photograph is scikit-image's ``retina.jpg`` (a normal left eye, public domain). The
synthetic columns are means over 16 generated No DR images (and Moderate for the figure). See
``drgrade.data.realism`` for what each statistic measures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage import data

from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.realism import STATISTICS, fundus_statistics, mean_statistics
from drgrade.data.synthetic import render_fundus

OUT = Path(__file__).parent / "realism.png"


def table() -> str:
    """The Markdown table: real photograph against the synthetic No DR mean."""
    real = fundus_statistics(data.retina())
    synthetic = mean_statistics([render_fundus(0, 512, np.random.default_rng(i))[0] for i in range(16)])
    lines = ["| statistic | real photograph | synthetic No DR (mean of 16) |", "|---|---|---|"]
    lines += [f"| {name} | {real[name]:.3f} | {synthetic[name]:.3f} |" for name in STATISTICS]
    return "\n".join(lines)


def figure() -> Path:
    """Real photograph, synthetic No DR and synthetic Moderate, each as the model sees it (cropped)."""
    images = {
        "real photograph (skimage retina.jpg)": data.retina(),
        "synthetic No DR": render_fundus(0, 768, np.random.default_rng(3))[0],
        "synthetic Moderate": render_fundus(2, 768, np.random.default_rng(4))[0],
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, (title, image) in zip(axes, images.items(), strict=True):
        ax.imshow(preprocess_fundus(image, 512))
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT, dpi=90)
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(table())
    print(f"figure: {figure()}")
