"""Grade fundus images with an exported ONNX model and onnxruntime alone (no torch, no Lightning).

    python -m drgrade.deploy model.onnx images/ --out predictions.csv

Preprocessing matches training exactly: the same fundus crop and resize code, then CLIP
normalisation with the constants stored in the model's metadata.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from drgrade.data.images import IMAGE_SUFFIXES, ImageReadError, read_rgb
from drgrade.data.preprocess import preprocess_fundus
from drgrade.grades import REFERABLE_FROM


class OnnxGrader:
    """An exported drgrade model in an onnxruntime session."""

    def __init__(self, model: str | Path, providers: list[str] | None = None, threads: int | None = None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model), options, providers=providers or ["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        if "image_size" not in meta:
            raise ValueError(f"{model} was not exported by `drgrade export` (no drgrade metadata)")
        self.size = int(meta["image_size"])
        self.mean = np.asarray(json.loads(meta["mean"]), np.float32) * 255
        self.std = np.asarray(json.loads(meta["std"]), np.float32) * 255
        self.grade_names = json.loads(meta["grade_names"])

    def tensor(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xSxS float32, cropped, resized and CLIP-normalised."""
        square = preprocess_fundus(image, self.size).astype(np.float32)
        return ((square - self.mean) / self.std).transpose(2, 0, 1)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [B, 5], grade [B]) for normalised images [B, 3, S, S]."""
        probabilities, grade = self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})
        return probabilities, grade

    def grade_files(self, paths: Iterable[Path], batch_size: int = 16) -> list[dict]:
        """One row per file, in the given order; an unreadable file gets its error, not a grade."""
        paths = list(paths)
        rows: list[dict] = []
        pending: list[tuple[Path, np.ndarray]] = []

        def flush() -> None:
            if pending:
                probabilities, grades = self.run(np.stack([t for _, t in pending]))
                for (path, _), p, g in zip(pending, probabilities, grades, strict=True):
                    rows.append(
                        {
                            "file": str(path),
                            "grade": int(g),
                            "grade_name": self.grade_names[int(g)],
                            "probabilities": p.tolist(),
                            "referable": int(g >= REFERABLE_FROM),
                            "error": "",
                        }
                    )
                pending.clear()

        for path in paths:
            try:
                pending.append((path, self.tensor(read_rgb(path))))
            except ImageReadError as error:
                rows.append(
                    {
                        "file": str(path),
                        "grade": None,
                        "grade_name": "",
                        "probabilities": None,
                        "referable": None,
                        "error": str(error),
                    }
                )
            if len(pending) == batch_size:
                flush()
        flush()
        order = {str(path): i for i, path in enumerate(paths)}
        return sorted(rows, key=lambda row: order[row["file"]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m drgrade.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="ONNX file from `drgrade export`")
    parser.add_argument("images", type=Path, help="folder of fundus images (png/jpg/tif)")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"))
    opts = parser.parse_args(argv)
    grader = OnnxGrader(opts.model)
    paths = sorted(p for p in opts.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    rows = grader.grade_files(paths)
    with opts.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "grade", "grade_name", *(f"p_{i}" for i in range(5)), "referable", "error"])
        for row in rows:
            probabilities = row["probabilities"] or [""] * 5
            writer.writerow(
                [
                    row["file"],
                    row["grade"],
                    row["grade_name"],
                    *(p if p == "" else f"{p:.6f}" for p in probabilities),
                    row["referable"],
                    row["error"],
                ]
            )
    print(f"{len(rows)} image(s) graded into {opts.out}")


if __name__ == "__main__":
    main()
