"""EyePACS scale: reading, validating and splitting the 88,702-row sheet, and caching per 10,000 images.

    .venv/bin/python benchmarks/scale.py [--rows 88702] [--cache_images 300 --cache_size 1024]

The sheet and its image files are generated in the published layout (``trainLabels.csv``,
``train/<patient>_<eye>.jpeg``), each file a hard link to one small JPEG so that 88,702 files
exist without 88,702 encodes; the existence check is therefore real, while the decode check
(``verify_images``) is timed separately on 10,000 files. The cache is timed on generated
photographs at ``--cache_size`` px and reported per 10,000 images.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from drgrade.data.cache import PreprocessCache, fill_cache
from drgrade.data.images import write_rgb
from drgrade.data.sources.common import check_decodes
from drgrade.data.sources.eyepacs import read as read_eyepacs
from drgrade.data.splits import split_identity, split_records
from drgrade.data.synthetic import render_fundus


def write_sheet(root: Path, rows: int) -> None:
    """An EyePACS training sheet of ``rows`` images (pairs of eyes), every file a hard link."""
    image, _ = render_fundus(0, 64, np.random.default_rng(0))
    originals = [root / f"original{k}.jpeg" for k in range(rows // 30_000 + 1)]  # file systems cap links
    for original in originals:
        write_rgb(original, image)
    (root / "train").mkdir()
    rng = np.random.default_rng(1)
    grades = rng.choice(5, size=rows, p=np.array([25810, 2443, 5292, 873, 708]) / 35126)
    with (root / "trainLabels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("image", "level"))
        for i in range(rows):
            name = f"{10 + i // 2}_{'left' if i % 2 == 0 else 'right'}"
            os.link(originals[i // 30_000], root / "train" / f"{name}.jpeg")
            writer.writerow((name, int(grades[i])))


def timed(label: str, fn):
    start = time.perf_counter()
    value = fn()
    print(f"  {label:<62} {time.perf_counter() - start:8.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=88_702, help="EyePACS training sheet rows")
    parser.add_argument("--cache_images", type=int, default=300, help="photographs to time the cache on")
    parser.add_argument("--cache_size", type=int, default=1024, help="their height in pixels")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        timed(
            f"write the sheet and {opts.rows:,} linked files (setup, not timed below)",
            lambda: write_sheet(root, opts.rows),
        )
        records = timed(
            "read + validate the sheet (columns, grades, ids, files)",
            lambda: read_eyepacs(root, verify_images=False).records,
        )
        splits = timed("grouped split (stratified, patients together)", lambda: split_records(records))
        timed("split fingerprint", lambda: split_identity(records, splits, (0.7, 0.15, 0.15), 42))
        sample = [r.path for r in records[:10_000]]
        timed("decode check of 10,000 files (verify_images)", lambda: [check_decodes(p) for p in sample])
        photos = []
        for i in range(opts.cache_images):
            image, _ = render_fundus(i % 5, opts.cache_size, np.random.default_rng(i))
            photos.append(root / "photos" / f"{i}.png")
            write_rgb(photos[-1], image)
        cache = PreprocessCache(root / "cache", 224)
        start = time.perf_counter()
        fill_cache(photos, cache, workers=2)
        per = (time.perf_counter() - start) / len(photos)
        rate = f"{per * 10_000:.0f} s per 10,000 images"
        print(f"  drgrade cache, {opts.cache_size} px PNG -> 224, 2 workers: {rate}")
    print(f"{len(records):,} records, {len({r.patient_id for r in records}):,} patients")


if __name__ == "__main__":
    main()
