"""INT8 against float ONNX Runtime: speed, size, grade agreement; ``make bench`` runs it.

    .venv/bin/python benchmarks/int8.py [--demo_runs runs] [--sources data/bench]

Speed and size use RN50 with random weights (speed does not depend on the weights' values).
Grade agreement and the macro AUROC change need trained models: the demo checkpoints (after
``make demo``), graded on the demo test split and on a held-out synthetic set generated with
another seed. The deploy runner's end-to-end throughput is measured by ``benchmarks/scale.py``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from drgrade.data.images import list_images
from drgrade.data.sources import write_synthetic
from drgrade.grades import GRADES
from drgrade.serving.export import export_onnx
from drgrade.serving.quantize import model_rate, quantize_onnx
from drgrade.serving.runner import OnnxGrader
from drgrade.tasks import FCNCLIP, RankingCLIP, load_task

Report = Callable[..., None]


def speed_section(report: Report, folder: Path, calibration: Path, threads: int) -> None:
    """Float vs INT8 images/s and file size for FCN-CLIP and ranking with RN50."""
    batch = np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)
    for name, make in (
        ("FCN-CLIP", lambda: FCNCLIP("RN50", None, 224)),
        ("ranking", lambda: RankingCLIP("RN50", None, 224)),
    ):
        float_path = export_onnx(make().eval(), folder / f"{name}.onnx", 224)
        int8_path = quantize_onnx(float_path, list_images(calibration)[0], "synthetic photographs")
        float_rate = model_rate(OnnxGrader(float_path, threads=threads), batch)
        int8_rate = model_rate(OnnxGrader(int8_path, threads=threads), batch)
        report(f"predict {name} RN50, ONNX Runtime float", float_rate)
        report(f"predict {name} RN50, ONNX Runtime INT8", int8_rate)
        report(f"INT8 speed-up ({name})", int8_rate / float_rate, "x")
        report(f"INT8 / float file size ({name})", int8_path.stat().st_size / float_path.stat().st_size, "")


def _graded(grader: OnnxGrader, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    rows = grader.grade_files(paths, workers=0)
    keep = [r.decision for r in rows if r.decision is not None]
    return np.array([d.probabilities for d in keep]), np.array([d.grade for d in keep])


def _macro_auroc(probs: np.ndarray, targets: np.ndarray) -> float:
    scores = [
        roc_auc_score(targets == g.index, probs[:, g.index])
        for g in GRADES
        if 0 < (targets == g.index).sum() < len(targets)
    ]
    return float(np.mean(scores))


def agreement_section(report: Report, runs: Path, folder: Path) -> None:
    """Grade agreement and macro AUROC change of INT8 on the demo test split and a held-out set."""
    held_out = write_synthetic(folder / "held_out", 120, 80, image_size=128, seed=123)
    for run_name, label in (("fcn_clip", "FCN-CLIP"), ("ranking", "ranking")):
        checkpoints = sorted(
            (runs / run_name).glob("version_*/checkpoints/best-*.ckpt"), key=lambda p: p.stat().st_mtime
        )
        tests = sorted((runs / run_name).glob("version_*/predictions.csv"), key=lambda p: p.stat().st_mtime)
        if not checkpoints or not tests:
            print(f"  (no demo {label} run under {runs}: run `make demo` for the agreement rows)")
            continue
        task = load_task(checkpoints[-1]).eval()
        float_path = export_onnx(task, folder / f"demo_{run_name}.onnx", task.hparams.image_size)
        training = runs.parent / "data/synthetic/aptos2019/train_images"
        int8_path = quantize_onnx(
            float_path, list_images(training)[0], "the demo's training images", keep_slower=True
        )
        with tests[-1].open(newline="") as f:
            test_rows = [r for r in csv.DictReader(f) if r["grade"]]
        sets = {
            "demo test split": (
                [Path(r["file"]) for r in test_rows],
                np.array([int(r["true_grade"]) for r in test_rows]),
            ),
            "held-out synthetic set": _labelled(held_out),
        }
        for set_name, (paths, targets) in sets.items():
            float_probs, float_grades = _graded(OnnxGrader(float_path), paths)
            int8_probs, int8_grades = _graded(OnnxGrader(int8_path), paths)
            report(
                f"INT8 grade agreement, {label} demo, {set_name}",
                100 * (float_grades == int8_grades).mean(),
                "%",
            )
            change = _macro_auroc(int8_probs, targets) - _macro_auroc(float_probs, targets)
            report(f"INT8 macro AUROC change, {label} demo, {set_name}", change, "")


def _labelled(roots: tuple[Path, Path]) -> tuple[list[Path], np.ndarray]:
    aptos = roots[0]
    with (aptos / "train.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [aptos / "train_images" / f"{r['id_code']}.png" for r in rows], np.array(
        [int(r["diagnosis"]) for r in rows]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo_runs", type=Path, default=Path("runs"), help="runs/ of a `make demo`")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    opts = parser.parse_args()
    torch.manual_seed(0)

    def report(name: str, value: float, unit: str = "images/s") -> None:
        print(f"  {name:<66} {value:10.4g} {unit}", flush=True)

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        calibration = Path("data/synthetic/aptos2019/train_images")  # the demo's training images
        if not calibration.is_dir():
            calibration = (
                write_synthetic(folder / "calibration", 40, 10, image_size=384, seed=7)[0] / "train_images"
            )
        speed_section(report, folder, calibration, opts.threads)
        agreement_section(report, opts.demo_runs, folder)


if __name__ == "__main__":
    main()
