"""Time of the data intake checks per 10,000 images: quality gate + hashes, and duplicate grouping.

    .venv/bin/python benchmarks/intake.py [--size 2000]

Writes synthetic photographs at ``--size`` px height, times ``inspect_file`` (one read of each
file: header, completeness, reduced decode, exposure/focus/fundus features, content hash and
dHash) per image, and times ``duplicate_groups`` on 10,000 and 90,000 hashes (EyePACS scale).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from drgrade.data.duplicates import duplicate_groups
from drgrade.data.images import write_rgb
from drgrade.data.quality import QualityLimits, _inspect
from drgrade.data.synthetic import render_fundus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000, help="image height in pixels")
    parser.add_argument("--images", type=int, default=40, help="images to time the per-image check on")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(opts.images):
            image, _ = render_fundus(i % 5, opts.size, np.random.default_rng(i))
            paths.append(Path(folder) / f"{i}.png")
            write_rgb(paths[-1], image)
        limits = QualityLimits()
        start = time.perf_counter()
        for path in paths:  # the undecorated function: no cache hit can flatter the figure
            _inspect.__wrapped__(str(path), 0, 0, limits)
        per_image = (time.perf_counter() - start) / len(paths)
    print(
        f"quality gate + hashes, {opts.size} px PNG: {per_image * 1000:.1f} ms/image, "
        f"{per_image * 10_000:.0f} s per 10,000 images (one core)"
    )
    rng = np.random.default_rng(0)
    for count in (10_000, 90_000):
        hashes = list(rng.random((count, 256)) > 0.5)
        start = time.perf_counter()
        duplicate_groups([str(i) for i in range(count)], hashes)
        print(f"duplicate grouping of {count:,} hashes: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
