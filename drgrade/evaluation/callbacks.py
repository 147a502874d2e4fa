"""Callbacks that turn a task's split results into files in the run directory (and W&B).

Files are written for every ``validate`` and ``test`` run, whatever loggers are configured,
so results never live only in a dashboard.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn

from drgrade.data.dataset import UNKNOWN
from drgrade.evaluation.metrics import SplitResult
from drgrade.evaluation.plots import confusion_figure, roc_figure
from drgrade.grades import GRADE_NAMES, GRADES, NUM_GRADES, REFERABLE_FROM
from drgrade.runs import run_dir

PROB_COLUMNS = [f"p_{g.short}" for g in GRADES]


def metrics_document(result: SplitResult, model: str, checkpoint: str | None) -> dict:
    """The content of metrics.json."""
    document = {
        "stage": result.stage,
        "model": model,
        "checkpoint": checkpoint,
        "decision": "calibrated" if result.argmax_evaluation is not None else "argmax",
        "thresholds": result.thresholds,
        "metrics": result.evaluation.metrics,
        "confusion_matrix": result.evaluation.confusion.tolist(),
        **result.extras,
    }
    if result.argmax_evaluation is not None:
        document["argmax_metrics"] = result.argmax_evaluation.metrics
        document["argmax_confusion_matrix"] = result.argmax_evaluation.confusion.tolist()
    return document


class EvaluationWriter(Callback):
    """Writes metrics.json, predictions.csv, confusion_matrix.png and roc_curves.png."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._write(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        out = run_dir(trainer)  # a collective under DDP: every rank must ask
        result: SplitResult | None = getattr(pl_module, "last_result", None)
        if result is None or not trainer.is_global_zero:
            return
        checkpoint = str(trainer.ckpt_path) if trainer.ckpt_path else None
        document = metrics_document(result, type(pl_module).__name__, checkpoint)
        (out / "metrics.json").write_text(json.dumps(document, indent=2))
        records = trainer.datamodule.records_of(split)
        self._write_predictions(out / "predictions.csv", result, records)
        evaluation = result.evaluation
        aurocs = [evaluation.metrics[f"auroc_{g.short}"] for g in GRADES]
        figures = {
            "confusion_matrix": confusion_figure(evaluation.confusion, f"{split}: {document['decision']}"),
            "roc_curves": roc_figure(evaluation.roc, aurocs, f"{split}: one-vs-rest ROC"),
        }
        for name, figure in figures.items():
            figure.savefig(out / f"{name}.png", dpi=120)
        self._log_wandb(trainer, split, document, figures, out)
        for figure in figures.values():
            plt.close(figure)
        print(f"evaluation files written to {out}")

    @staticmethod
    def _write_predictions(path: Path, result: SplitResult, records) -> None:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "source", "true_grade", "pred_grade", *PROB_COLUMNS])
            for i, target, pred, probs in zip(
                result.index.tolist(),
                result.targets.tolist(),
                result.preds.tolist(),
                result.probs.tolist(),
                strict=True,
            ):
                record = records[i]
                writer.writerow([record.path, record.source, target, pred, *(f"{p:.6f}" for p in probs)])

    @staticmethod
    def _log_wandb(trainer: L.Trainer, split: str, document: dict, figures: dict, out: Path) -> None:
        for logger in trainer.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            import wandb

            metrics = document["metrics"]
            rows = [
                [
                    g.name,
                    metrics[f"precision_{g.short}"],
                    metrics[f"recall_{g.short}"],
                    metrics[f"f1_{g.short}"],
                    metrics[f"auroc_{g.short}"],
                ]
                for g in GRADES
            ]
            logger.experiment.log(
                {
                    f"{split}/per_class": wandb.Table(
                        columns=["grade", "precision", "recall", "f1", "auroc"], data=rows
                    ),
                    **{f"{split}/{name}": wandb.Image(str(out / f"{name}.png")) for name in figures},
                }
            )


class PredictionWriter(BasePredictionWriter):
    """``drgrade predict``: predictions.csv with grade, name, probabilities, referable flag, error."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = [row for batch in predictions for row in batch]
        if dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        path = run_dir(trainer) / "predictions.csv"  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        records = trainer.datamodule.records_of("predict")
        seen: set[int] = set()
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["file", "true_grade", "grade", "grade_name", *PROB_COLUMNS, "referable", "error"]
            )
            for row in sorted(rows, key=lambda r: r["index"]):
                if row["index"] in seen:
                    continue
                seen.add(row["index"])
                record = records[row["index"]]
                true = "" if record.grade == UNKNOWN else record.grade
                if row["error"]:
                    writer.writerow([record.path, true, "", "", *[""] * NUM_GRADES, "", row["error"]])
                    continue
                grade = row["grade"]
                writer.writerow(
                    [
                        record.path,
                        true,
                        grade,
                        GRADE_NAMES[grade],
                        *(f"{p:.6f}" for p in row["probs"]),
                        int(grade >= REFERABLE_FROM),
                        "",
                    ]
                )
        print(f"predictions for {len(seen)} image(s) written to {path}")


def split_rows(probs: torch.Tensor, grades: torch.Tensor, batch: dict) -> list[dict]:
    """Per-image prediction rows of one batch, for ``PredictionWriter``."""
    return [
        {"index": int(i), "probs": p, "grade": int(g), "error": e}
        for i, p, g, e in zip(
            batch["index"].tolist(), probs.tolist(), grades.tolist(), batch["error"], strict=True
        )
    ]
