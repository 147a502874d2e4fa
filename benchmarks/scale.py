"""EyePACS scale: one intake per photograph, remembered; deploy at the model's speed.

    .venv/bin/python benchmarks/scale.py [--images 2000] [--size 2000] [--workers 2] [--deploy_images 300]

Writes an EyePACS-layout folder (``trainLabels.csv``, ``train/<patient>_<eye>.jpeg``) of
``--images`` synthetic photographs ``--size`` px high (JPEG quality 90, with sensor-like noise so
the files carry a camera's entropy, not a drawing's), then reports:

1. a plain decode pass (each file to full-size RGB, one process): the floor any reader pays;
2. the first intake (quality-gate measurements, content digest, perceptual hash and network
   crop from one reduced-scale decode, stored): images/s with ``--workers`` processes and
   core-seconds per image against the plain decode;
3. ``DRDataModule`` setup with a cold cache, then a second setup on the same data (target: the
   second under 5% of the first), the cache's size per image, and the extrapolation to 88,702
   images;
4. ``python -m drgrade.deploy``'s runner end to end against the model alone (FCN-CLIP RN50 with
   random weights: speed does not depend on the weights' values), float and INT8, on the JPEGs,
   and the decode cost of the same photographs as PNG.

Reading, validating and splitting the 88,702-row sheet itself takes under 2 s (``--sheet_rows``
times it on hard-linked files).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from drgrade.data.intake import IntakeCache, take_in_all
from drgrade.data.sources.eyepacs import COUNTS
from drgrade.data.sources.eyepacs import read as read_eyepacs
from drgrade.data.splits import split_records
from drgrade.data.synthetic import render_fundus

EYEPACS_ROWS = 88_702


def photograph(args: tuple[int, int, int, Path]) -> None:
    """One synthetic photograph: drawn at a quarter size, enlarged, with camera-like noise, as JPEG."""
    index, grade, size, path = args
    rng = np.random.default_rng(index)
    small, _ = render_fundus(grade, size // 4, rng)
    large = cv2.resize(small, (small.shape[1] * 4, small.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    noisy = np.clip(large + rng.normal(0, 3, large.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def write_eyepacs(root: Path, images: int, size: int, workers: int) -> list[Path]:
    """The published layout with ``images`` photographs (both eyes of each patient)."""
    (root / "train").mkdir(parents=True)
    grades = np.random.default_rng(0).choice(5, size=images, p=np.array(COUNTS) / sum(COUNTS))
    names = [f"{10 + i // 2}_{'left' if i % 2 == 0 else 'right'}" for i in range(images)]
    paths = [root / "train" / f"{name}.jpeg" for name in names]
    jobs = [(i, int(g), size, p) for i, (g, p) in enumerate(zip(grades, paths, strict=True))]
    with get_context("spawn").Pool(workers) as pool:
        pool.map(photograph, jobs, chunksize=8)
    with (root / "trainLabels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "level"), *zip(names, grades.tolist(), strict=True)])
    return paths


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(fn):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    value = fn()
    return value, time.perf_counter() - wall, cpu_seconds() - cpu


def plain_decode(paths: list[Path]) -> None:
    """Every file to full-size RGB, the way a reader without reduced decoding does."""
    for path in paths:
        cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def setup(root: Path, cache: Path, workers: int):
    """A fit setup of the EyePACS folder, as ``drgrade fit`` does it (intake, gate, dedupe, split).

    (Imported here: worker processes re-import this script and need no torch.)
    """
    from drgrade.data import DRDataModule

    datamodule = DRDataModule(
        roots={"eyepacs": str(root)},
        image_size=224,
        num_workers=workers,
        cache_dir=str(cache),
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def intake_section(report, root: Path, paths: list[Path], work: Path, workers: int) -> None:
    """Plain decode, first intake, first and second setup, cache size, extrapolation."""
    n = len(paths)
    _, wall, cpu = measured(lambda: plain_decode(paths))
    plain = cpu / n
    report("plain decode to full-size RGB, 1 process", n / wall, "images/s")
    report("plain decode, core-seconds per image", plain * 1000, "ms")
    _, wall, cpu = measured(lambda: take_in_all(paths, IntakeCache(work / "intake", 224), workers))
    report(f"first intake, {workers} processes", n / wall, "images/s")
    report("first intake, core-seconds per image", cpu / n * 1000, "ms")
    report("first intake / plain decode (core-seconds)", cpu / n / plain, "x (target <= 1.3)")
    _, first, _ = measured(lambda: setup(root, work / "setup", workers))
    datamodule, second, _ = measured(lambda: setup(root, work / "setup", workers))
    report("first fit setup (cold cache: intake, gate, dedupe, split)", first, "s")
    report("second fit setup (same data)", second, "s")
    report("second / first", 100 * second / first, "% (target < 5)")
    size = folder_bytes(work / "setup") / n
    report("cache size per image", size / 1024, "KiB")
    report(f"images kept by the gate of {n}", len(datamodule.records), "")
    scale = EYEPACS_ROWS / n
    report(
        f"extrapolated first setup, {EYEPACS_ROWS:,} images, {workers} processes", first * scale / 60, "min"
    )
    report(f"extrapolated second setup, {EYEPACS_ROWS:,} images", second * scale, "s")
    report(f"extrapolated cache size, {EYEPACS_ROWS:,} images", size * EYEPACS_ROWS / 2**30, "GiB")


def deploy_section(report, paths: list[Path], work: Path, workers: int, threads: int) -> None:
    """Model alone against the deploy runner end to end, float and INT8; PNG decode cost."""
    from drgrade.serving.export import export_onnx
    from drgrade.serving.quantize import model_rate, quantize_onnx
    from drgrade.serving.runner import OnnxGrader, prepared
    from drgrade.tasks import FCNCLIP

    float_model = export_onnx(FCNCLIP("RN50", None, 224).eval(), work / "fcn_clip.onnx", 224)
    int8_model = quantize_onnx(float_model, paths[:32], "benchmark photographs")
    pngs = []
    for path in paths[:60]:
        pngs.append(work / "png" / f"{path.stem}.png")
        pngs[-1].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(pngs[-1]), cv2.imread(str(path)))
    for name, model in (("float", float_model), ("INT8", int8_model)):
        grader = OnnxGrader(model, threads=threads)
        batch = np.stack([prepared(p, 224, grader.mean, grader.std)[0] for p in paths[:16]]).astype(
            np.float32
        )
        alone = model_rate(grader, batch)
        report(f"{name} FCN-CLIP RN50, model alone, {threads} threads", alone, "images/s")
        for count, files, kind in ((len(paths), paths, "JPEG"), (len(pngs), pngs, "PNG")):
            _, wall, _ = measured(lambda g=grader, f=files: g.grade_files(f, 16, workers))
            rate = count / wall
            report(
                f"{name} end to end, {kind}, {workers} workers", rate, f"images/s ({100 * rate / alone:.0f}%)"
            )


def sheet_section(report, rows: int, work: Path) -> None:
    """Read, validate and split the full-size sheet over hard-linked files (files exist, one content)."""
    root = work / "sheet"
    (root / "train").mkdir(parents=True)
    originals = [work / f"one{k}.jpeg" for k in range(rows // 30_000 + 1)]  # file systems cap links
    for k, original in enumerate(originals):
        photograph((k, 0, 256, original))
    names = [f"{10 + i // 2}_{'left' if i % 2 == 0 else 'right'}" for i in range(rows)]
    for i, name in enumerate(names):
        os.link(originals[i // 30_000], root / "train" / f"{name}.jpeg")
    grades = np.random.default_rng(1).choice(5, size=rows, p=np.array(COUNTS) / sum(COUNTS))
    with (root / "trainLabels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "level"), *zip(names, grades.tolist(), strict=True)])
    records, wall, _ = measured(lambda: read_eyepacs(root, verify_images=False).records)
    report(f"read + validate the {rows:,}-row sheet (every file present)", wall, "s")
    _, wall, _ = measured(lambda: split_records(records))
    report("grouped split (stratified, patients kept whole)", wall, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="photographs to write and take in")
    parser.add_argument("--size", type=int, default=2000, help="their height in pixels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="intake / deploy processes")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime threads")
    parser.add_argument("--deploy_images", type=int, default=300, help="photographs the runner grades")
    parser.add_argument("--sheet_rows", type=int, default=EYEPACS_ROWS, help="rows of the sheet timing")
    parser.add_argument("--only", nargs="*", default=["sheet", "intake", "deploy"])
    opts = parser.parse_args()

    def report(name: str, value: float, unit: str) -> None:
        print(f"  {name:<70} {value:10.4g} {unit}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if "sheet" in opts.only:
            sheet_section(report, opts.sheet_rows, work)
        if {"intake", "deploy"} & set(opts.only):
            start = time.perf_counter()
            paths = write_eyepacs(work / "eyepacs", opts.images, opts.size, opts.workers)
            mean_size = sum(p.stat().st_size for p in paths) / len(paths)
            print(
                f"wrote {len(paths)} {opts.size}-px JPEGs ({mean_size / 2**20:.2f} MiB each) "
                f"in {time.perf_counter() - start:.0f} s (not timed below)"
            )
        if "intake" in opts.only:
            intake_section(report, work / "eyepacs", paths, work, opts.workers)
        if "deploy" in opts.only:
            deploy_section(report, paths[: opts.deploy_images], work, opts.workers, opts.threads)


if __name__ == "__main__":
    main()
