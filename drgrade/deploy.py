"""Grade fundus images with an exported ONNX model and onnxruntime alone (no torch, no Lightning).

    python -m drgrade.deploy model.onnx images/ --out predictions.csv

Preprocessing matches training exactly: the same fundus crop and resize code, then CLIP
normalisation with the constants stored in the model's metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from drgrade.data.images import ImageReadError, list_images
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.quality import read_gradable
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
        square = preprocess_fundus(image, self.size).astype(np.float32)
        return ((square - self.mean) / self.std).transpose(2, 0, 1)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [B, 5], grade [B]) for normalised images [B, 3, S, S]."""
        probabilities, grade = self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})
        return probabilities, grade

    def grade_files(self, paths: Iterable[Path], batch_size: int = 16) -> list[PredictionRow]:
        """One row per file, in the given order; an unreadable file gets its error, not a grade.

        Args:
            paths: the image files.
            batch_size: images per onnxruntime call.
        """
        rows: dict[Path, PredictionRow] = {}
        pending: list[tuple[Path, np.ndarray]] = []
        paths = list(paths)
        for position, path in enumerate(paths):
            try:
                pending.append((path, self.tensor(read_gradable(path))))
            except ImageReadError as error:
                rows[path] = PredictionRow(str(path), error=str(error))
            if pending and (len(pending) == batch_size or position == len(paths) - 1):
                probabilities, grades = self.run(np.stack([t for _, t in pending]))
                for (done, _), p, g in zip(pending, probabilities, grades, strict=True):
                    rows[done] = PredictionRow(str(done), p.tolist(), int(g), rule=self.rule)
                pending.clear()
        return [rows[path] for path in paths]


def main(argv: list[str] | None = None) -> None:
    """``python -m drgrade.deploy MODEL IMAGES [--out CSV]``.

    Args:
        argv: command-line arguments without the program name.
    """
    parser = argparse.ArgumentParser(prog="python -m drgrade.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="ONNX file from `drgrade export`")
    parser.add_argument("images", type=Path, help="folder of fundus images (png/jpg/tif)")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"))
    opts = parser.parse_args(argv)
    try:
        grader = OnnxGrader(opts.model)
        paths, skipped = list_images(opts.images)
    except (DeployError, FileNotFoundError) as error:
        print(f"python -m drgrade.deploy: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    rows = grader.grade_files(paths)
    rows += [PredictionRow(str(path), error=f"skipped: {reason}") for path, reason in skipped]
    write_predictions(opts.out, rows)
    print(f"{len(rows)} image(s) into {opts.out}; {ungradable_summary(rows)}")


if __name__ == "__main__":
    main()
