"""Grading an archive: photographs per second per core, projected to EyePACS and to a million.

    .venv/bin/python benchmarks/archive.py [--images 20000] [--size 2000] [--workers 2] [--threads 2]

Writes ``--images`` synthetic photographs ``--size`` px high as JPEGs (quality 90, camera-like
noise; ``scale.py``'s writer), exports FCN-CLIP on RN50 (random weights: speed does not depend on
their values) to ONNX, then grades the folder end to end with ``python -m drgrade.deploy``'s
runner: intake (one reduced-scale decode), quality gate, model, decision rule, predictions.csv.
It reports:

1. the end-to-end rate, per core, and the projected wall time for EyePACS (88,702 photographs)
   and for 1,000,000 on this machine;
2. where a photograph's cost goes, in core-milliseconds, each step timed alone on a sample of
   the archive in one process: decode (read, header, reduced-scale decode, fundus crop,
   normalisation), gate (the quality measurements), model (the ONNX graph with the rule inside,
   CPU time of all its threads per image of a 16-image batch), write (the CSV row);
3. deploy's ratio to its intake ceiling: with the model keeping every core busy, a perfect
   overlap of intake and model reaches model / (model + decode + gate) of the model-alone rate;
   the end-to-end rate over that ceiling (target >= 0.9).

For a GPU, ``benchmarks/gpu_check.sh`` is the prepared run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scale import photograph

from drgrade.data.images import decode, read_bytes
from drgrade.data.intake import decode_target
from drgrade.data.quality import measure
from drgrade.predictions import write_predictions

EYEPACS = 88_702
MILLION = 1_000_000
SIZE = 224


def write_archive(folder: Path, images: int, size: int, workers: int) -> list[Path]:
    """``images`` synthetic photographs, grades spread evenly, as ``folder/<n>.jpeg``."""
    folder.mkdir(parents=True)
    paths = [folder / f"{i:06d}.jpeg" for i in range(images)]
    jobs = [(i, i % 5, size, path) for i, path in enumerate(paths)]
    with get_context("spawn").Pool(workers) as pool:
        pool.map(photograph, jobs, chunksize=8)
    return paths


def per_image_ms(fn, items) -> float:
    """Median core-milliseconds of ``fn(item)`` over ``items`` (one process, one thread)."""
    times = []
    for item in items:
        start = time.process_time()
        fn(item)
        times.append(time.process_time() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="photographs in the archive")
    parser.add_argument("--size", type=int, default=2000, help="their height in pixels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="intake processes")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime threads")
    parser.add_argument("--sample", type=int, default=40, help="photographs each step is timed alone on")
    opts = parser.parse_args()
    cores = os.cpu_count() or 1

    def report(name: str, value: float, unit: str) -> None:
        print(f"  {name:<64} {value:10.4g} {unit}", flush=True)

    from drgrade.serving.export import export_onnx
    from drgrade.serving.quantize import model_rate
    from drgrade.serving.runner import OnnxGrader, prepared
    from drgrade.tasks import FCNCLIP

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        start = time.perf_counter()
        paths = write_archive(work / "archive", opts.images, opts.size, opts.workers)
        mean_size = sum(p.stat().st_size for p in paths) / len(paths)
        print(
            f"wrote {len(paths):,} {opts.size}-px JPEGs ({mean_size / 2**20:.2f} MiB each) in "
            f"{time.perf_counter() - start:.0f} s (not timed); {cores} cores, {opts.workers} intake "
            f"processes, {opts.threads} onnxruntime threads",
            flush=True,
        )
        grader = OnnxGrader(
            export_onnx(FCNCLIP("RN50", None, SIZE).eval(), work / "m.onnx", SIZE), threads=opts.threads
        )

        start = time.perf_counter()
        rows = grader.grade_files(paths, 16, opts.workers)
        write_predictions(work / "predictions.csv", rows)
        wall = time.perf_counter() - start
        rate = len(paths) / wall
        report(f"end to end, {len(paths):,} photographs", rate, "photographs/s")
        report("per core", rate / cores, "photographs/s/core")
        report(f"projected, EyePACS ({EYEPACS:,})", EYEPACS / rate / 3600, "h")
        report(f"projected, {MILLION:,}", MILLION / rate / 3600, "h")

        sample = paths[: opts.sample]
        images = {p: decode(read_bytes(p), p, decode_target(SIZE)) for p in sample}  # as the intake decodes
        intake_ms = per_image_ms(lambda p: prepared(p, SIZE, grader.mean, grader.std), sample)
        gate_ms = per_image_ms(lambda p: measure(images[p]), sample)
        decode_ms = intake_ms - gate_ms  # read, header, reduced decode, crop, normalisation
        batch = np.stack([prepared(p, SIZE, grader.mean, grader.std)[0] for p in sample[:16]])
        alone = model_rate(grader, batch)
        start = time.process_time()  # every thread of this process: onnxruntime's included
        for _ in range(3):
            grader.run(batch)
        model_ms = 1000 * (time.process_time() - start) / (3 * len(batch))
        start = time.process_time()
        write_predictions(work / "again.csv", rows)
        write_ms = 1000 * (time.process_time() - start) / len(rows)
        total = decode_ms + gate_ms + model_ms + write_ms
        for name, ms in (("decode", decode_ms), ("gate", gate_ms), ("model", model_ms), ("write", write_ms)):
            report(f"cost per photograph: {name}", ms, f"core-ms ({100 * ms / total:.0f}%)")
        report("model alone, 16-image batches", alone, "photographs/s")
        ceiling = model_ms / (model_ms + decode_ms + gate_ms)
        report("intake ceiling: model / (model + decode + gate)", 100 * ceiling, "% of the model-alone rate")
        report("end to end / model alone", 100 * rate / alone, "%")
        report("deploy's ratio to its ceiling", rate / alone / ceiling, "(target >= 0.9)")


if __name__ == "__main__":
    main()
