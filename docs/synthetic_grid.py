"""Draw docs/synthetic_grid.png: generated fundus images, one column per grade (`make docs`)."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from drgrade.data.synthetic import render_fundus
from drgrade.grades import GRADES


def main(out: str, per_grade: int = 3, size: int = 256, seed: int = 0) -> None:
    """Render ``per_grade`` images of every grade side by side."""
    fig, axes = plt.subplots(per_grade, len(GRADES), figsize=(2.4 * len(GRADES), 2.4 * per_grade))
    for grade in GRADES:
        for row in range(per_grade):
            image, _ = render_fundus(grade.index, size, np.random.default_rng([seed, grade.index, row]))
            axes[row, grade.index].imshow(image)
            axes[row, grade.index].axis("off")
        axes[0, grade.index].set_title(f"{grade.index}: {grade.name}")
    fig.suptitle("drgrade synthetic fundus images (procedural; lesions grow with grade)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/synthetic_grid.png")
