"""Synthetic fundus images measured against a real photograph: statistics table and side-by-side figure.

    .venv/bin/python docs/realism.py        # (make docs) writes docs/realism.png, prints the table

The real photograph of the table is scikit-image's ``retina.jpg`` (a normal left eye, public
domain); the synthetic column is the mean over 16 generated No DR images. See
``drgrade.data.realism`` for what each statistic measures. The figure sets real photographs from
several cameras (tests/data/real_photos, provenance in its PROVENANCE.md) above the generator's
camera profiles (``drgrade.data.synthetic.CAMERAS``), each as a whole frame: colour, exposure and
how the field is framed are what the profiles imitate.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage import data

from drgrade.data.images import read_rgb
from drgrade.data.realism import STATISTICS, fundus_statistics, mean_statistics
from drgrade.data.synthetic import CAMERAS, render_fundus

OUT = Path(__file__).parent / "realism.png"


def table() -> str:
    """The Markdown table: real photograph against the synthetic No DR mean."""
    real = fundus_statistics(data.retina())
    synthetic = mean_statistics([render_fundus(0, 512, np.random.default_rng(i))[0] for i in range(16)])
    lines = ["| statistic | real photograph | synthetic No DR (mean of 16) |", "|---|---|---|"]
    lines += [f"| {name} | {real[name]:.3f} | {synthetic[name]:.3f} |" for name in STATISTICS]
    return "\n".join(lines)


#: Real photographs for the figure: (file in tests/data/real_photos or None for scikit-image's, title).
REAL = (
    (None, "scikit-image retina"),
    ("chasedb1_08L.jpg", "CHASE_DB1: yellow"),
    ("fundusprep_cropped.jpg", "unknown camera: lilac"),
    ("palm_p0185.jpg", "PALM: dark-orange"),
    ("hrf_04_g.jpg", "HRF: cut top and bottom"),
    ("fundusprep_issue_1.jpg", "unknown: cropped field"),
    ("fundusprep_sample_dark.jpg", "unknown: small dark disc"),
)


def figure() -> Path:
    """Real photographs from several cameras above the synthetic camera profiles, whole frames."""
    folder = Path(__file__).parent.parent / "tests" / "data" / "real_photos"
    real = [(data.retina() if name is None else read_rgb(folder / name), title) for name, title in REAL]
    synthetic = [
        (render_fundus(2, 512, np.random.default_rng(4), camera), f"synthetic: {camera}")
        for camera in CAMERAS
    ]
    fig, axes = plt.subplots(2, len(CAMERAS), figsize=(2.4 * len(CAMERAS), 5.4))
    for ax, (image, title) in zip(axes.ravel(), [*real, *((i, t) for (i, _), t in synthetic)], strict=True):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(table())
    print(f"figure: {figure()}")
