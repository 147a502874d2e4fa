"""The paper's per-model figures, drawn from run folders.

Training curves (Figures 2-3), confusion matrix (Figure 4) and one-vs-rest ROC curves (Figure 5),
plus each run's reliability diagram and uncertainty-referral curves.

Everything is read back from files the runs wrote (``metrics.csv`` of the fit behind the
evaluated checkpoint, ``predictions.csv`` and ``metrics.json`` of the evaluation), the way the
tables are, so a figure can be redrawn from an archived run folder.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from drgrade.evaluation.metrics import compute_metrics
from drgrade.files import save_figure
from drgrade.grades import GRADES
from drgrade.predictions import read_predictions
from drgrade.provenance import TRAINING_FILE
from drgrade.reporting.plots import confusion_figure, curves_figure, roc_figure


def slug(text: str) -> str:
    """A file-name-safe form of a column label.

    Args:
        text: e.g. ``Ranking [test, calibrated]``.
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def epoch_curves(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """Per-epoch values of every logged column of a CSVLogger ``metrics.csv``.

    Args:
        metrics_csv: the fit run's file.
    """
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    with metrics_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value and key not in ("epoch", "step") and row.get("epoch"):
                    curves[key][int(row["epoch"])] = float(value)
    return curves


def write_model_figures(runs: Sequence, folder: Path) -> list[Path]:
    """Per report column: its confusion matrix; per run: ROC curves and the training curves.

    Args:
        runs: the report's columns (``RunResult``).
        folder: where the PNG files go.
    """
    written: list[Path] = []
    drawn: set[Path] = set()
    for run in runs:
        figure = confusion_figure(torch.as_tensor(run.confusion), run.label)
        written.append(save_figure(figure, folder / f"{slug(run.label)}_confusion.png"))
        plt.close(figure)
        if run.directory in drawn:
            continue
        drawn.add(run.directory)
        name = slug(f"{run.name} {run.stage}")
        predictions = run.directory / "predictions.csv"
        if predictions.is_file():
            saved = read_predictions(predictions)
            evaluation = compute_metrics(
                torch.from_numpy(saved.probabilities),
                torch.from_numpy(saved.targets),
                torch.from_numpy(saved.grades),
            )
            aurocs = [evaluation.metrics[f"auroc_{g.short}"] for g in GRADES]
            figure = roc_figure(evaluation.roc, aurocs, f"{run.name} [{run.stage}]: one-vs-rest ROC")
            written.append(save_figure(figure, folder / f"{name}_roc.png"))
            plt.close(figure)
        for figure_name in ("reliability_diagram", "referral_curves"):
            drawn_by_run = run.directory / f"{figure_name}.png"
            if drawn_by_run.is_file():
                written.append(Path(shutil.copyfile(drawn_by_run, folder / f"{name}_{figure_name}.png")))
        fitted = Path(run.checkpoint).parent.parent / "metrics.csv" if run.checkpoint else None
        curves = epoch_curves(fitted) if fitted is not None and fitted.is_file() else {}
        if curves.get("train/loss_epoch"):  # zero-shot and the ensemble have no training to draw
            summary = fitted.parent / TRAINING_FILE
            training = json.loads(summary.read_text()) if summary.is_file() else {}
            figure = curves_figure(
                curves,
                f"{run.name}: training and validation",
                training.get("best_epoch"),
                training.get("monitor"),
            )
            written.append(save_figure(figure, folder / f"{slug(run.name)}_curves.png"))
            plt.close(figure)
    return written
