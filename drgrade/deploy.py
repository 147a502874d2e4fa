"""Grade fundus images with an exported ONNX model and onnxruntime alone (no torch, no Lightning).

    python -m drgrade.deploy model.onnx images/ --out predictions.csv

Preprocessing matches training exactly: the same fundus crop and resize code, then CLIP
normalisation with the constants stored in the model's metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from drgrade.data.images import ImageReadError, list_images
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.quality import FEATURES, read_assessed
from drgrade.predictions import PredictionRow, ReferralRule, ungradable_summary, write_predictions


class DeployError(ValueError):
    """A model file or folder the runner cannot use; the message says which and why."""


class OnnxGrader:
    """An exported drgrade model in an onnxruntime session."""

    def __init__(self, model: str | Path, providers: list[str] | None = None, threads: int | None = None):
        model = Path(model)
        if not model.is_file() or model.stat().st_size == 0:
            raise DeployError(
                f"{model}: {'empty file' if model.is_file() else 'no such file'}; "
                "pass the .onnx file `drgrade export` wrote"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(model), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own types for every malformed file
            raise DeployError(
                f"{model} is not a valid ONNX model ({str(error).splitlines()[0][:200]})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "image_size" not in meta:
            raise DeployError(f"{model} was not exported by `drgrade export` (no drgrade metadata)")
        self.size = int(meta["image_size"])
        self.mean = np.asarray(json.loads(meta["mean"]), np.float32) * 255
        self.std = np.asarray(json.loads(meta["std"]), np.float32) * 255
        self.grade_names = json.loads(meta["grade_names"])
        rule = json.loads(meta.get("referral_rule", "{}"))
        self.rule = ReferralRule(rule.get("referable_cut"), float(rule.get("uncertainty_cutoff", "inf")))

    def tensor(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xSxS float32, cropped, resized and CLIP-normalised."""
        return normalised(image, self.size, self.mean, self.std)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [B, 5], grade [B]) for normalised images [B, 3, S, S]."""
        probabilities, grade = self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})
        return probabilities, grade

    def grade_files(
        self, paths: Iterable[Path], batch_size: int = 16, workers: int = 0
    ) -> list[PredictionRow]:
        """One row per file, in the given order; an unreadable or ungradable file gets its reason.

        With ``workers`` > 0, files are decoded, gated and preprocessed in that many processes
        while the model runs on earlier batches (a folder of large photographs is decode-bound);
        at most a few batches wait in memory.

        Args:
            paths: the image files.
            batch_size: images per onnxruntime call.
            workers: preprocessing processes (0: in this process).
        """
        paths = list(paths)
        prepare = partial(prepared, size=self.size, mean=self.mean, std=self.std)
        rows = [PredictionRow(str(path)) for path in paths]
        pending: list[tuple[int, np.ndarray]] = []  # (row, network input) waiting for a batch
        with _pool(workers) as pool, tqdm(total=len(paths), desc="grading", unit="image") as bar:
            for index, (tensor, error, quality) in enumerate(
                _ordered(pool, prepare, paths, depth=4 * batch_size)
            ):
                rows[index] = PredictionRow(str(paths[index]), error=error, quality=quality)
                if not error:
                    pending.append((index, tensor))
                if len(pending) == batch_size:
                    self._grade_batch(pending, rows)
                bar.update()
            if pending:
                self._grade_batch(pending, rows)
        return rows

    def _grade_batch(self, pending: list[tuple[int, np.ndarray]], rows: list[PredictionRow]) -> None:
        """Run one batch and fill in its rows; empties ``pending``."""
        probabilities, grades = self.run(np.stack([tensor for _, tensor in pending]))
        for (index, _), p, g in zip(pending, probabilities, grades, strict=True):
            row = rows[index]
            rows[index] = PredictionRow(row.file, p.tolist(), int(g), rule=self.rule, quality=row.quality)
        pending.clear()


def normalised(image: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xSxS float32: fundus crop, resize, CLIP normalisation."""
    square = preprocess_fundus(image, size).astype(np.float32)
    return ((square - mean) / std).transpose(2, 0, 1)


def prepared(path: Path, size: int, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray | None, str, list]:
    """(network input, "", gate features) or (None, why it is not graded, features): one worker's job."""
    try:
        image, features = read_assessed(path)
        return normalised(image, size, mean, std), "", [features[name] for name in FEATURES]
    except ImageReadError as error:
        measured = getattr(error, "features", {})
        return None, str(error), [measured.get(name, float("nan")) for name in FEATURES]


class _InProcess:
    """The executor interface for ``workers=0``: every job runs at once, in this process."""

    def submit(self, fn, *args):
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _pool(workers: int):
    return ProcessPoolExecutor(workers) if workers > 0 else _InProcess()


def _ordered(pool, fn, paths: list[Path], depth: int):
    """``fn(path)`` for every path, in order, with at most ``depth`` jobs submitted ahead."""
    queue: deque[Future] = deque()
    for path in paths:
        queue.append(pool.submit(fn, path))
        if len(queue) >= depth:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()


def main(argv: list[str] | None = None) -> None:
    """``python -m drgrade.deploy MODEL IMAGES [--out CSV]``.

    Args:
        argv: command-line arguments without the program name.
    """
    parser = argparse.ArgumentParser(prog="python -m drgrade.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="ONNX file from `drgrade export`")
    parser.add_argument("images", type=Path, help="folder of fundus images (png/jpg/tif)")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="preprocessing processes")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: its own)")
    parser.add_argument("--batch_size", type=int, default=16)
    opts = parser.parse_args(argv)
    try:
        grader = OnnxGrader(opts.model, threads=opts.threads)
        paths, skipped = list_images(opts.images)
    except (DeployError, FileNotFoundError) as error:
        print(f"python -m drgrade.deploy: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.perf_counter()
    rows = grader.grade_files(paths, opts.batch_size, opts.workers)
    rate = len(paths) / max(time.perf_counter() - start, 1e-9)
    rows += [PredictionRow(str(path), error=f"skipped: {reason}") for path, reason in skipped]
    write_predictions(opts.out, rows)
    print(f"{len(rows)} image(s) into {opts.out} at {rate:.1f} images/s; {ungradable_summary(rows)}")


if __name__ == "__main__":
    main()
