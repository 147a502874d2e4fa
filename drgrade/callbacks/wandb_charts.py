"""An evaluation in W&B's own terms: interactive confusion matrix and ROC charts, tables, figures.

Imported only when a ``WandbLogger`` is configured. The ROC chart is built from the same
torchmetrics curves as ``roc_curves.png`` (W&B's ``wandb.plot.roc_curve`` would recompute them
with scikit-learn and pandas, which the core install does not carry).
"""

from __future__ import annotations

from pathlib import Path

import wandb

from drgrade.evaluation.metrics import SplitResult
from drgrade.grades import GRADE_NAMES, GRADES


def roc_chart(result: SplitResult, split: str):
    """One-vs-rest ROC curves as W&B's area-under-curve custom chart."""
    rows = []
    for grade, curve in zip(GRADES, result.evaluation.roc, strict=True):
        if curve is not None:
            rows += [[grade.name, float(f), float(t)] for f, t in zip(*curve, strict=True)]
    table = wandb.Table(columns=["class", "fpr", "tpr"], data=rows)
    return wandb.plot_table(
        "wandb/area-under-curve/v0",
        table,
        {"x": "fpr", "y": "tpr", "class": "class"},
        {
            "title": f"{split}: one-vs-rest ROC",
            "x-axis-title": "false positive rate",
            "y-axis-title": "true positive rate",
        },
    )


def evaluation_entries(
    result: SplitResult, split: str, document: dict, out: Path, figures: list[str]
) -> dict:
    """Everything one validate/test run logs to W&B, by key.

    Args:
        result: the split's predictions.
        split: ``val`` or ``test``.
        document: the run's metrics.json content.
        out: the run folder holding the figures (None during ``fit``: no files, charts only).
        figures: the figure names written there.
    """
    metrics = document["metrics"]
    columns = ["grade", "precision", "recall", "f1", "auroc"]
    rows = [[g.name, *(metrics[f"{key}_{g.short}"] for key in columns[1:])] for g in GRADES]
    points = document.get("operating_points", [])
    point_columns = ["name", "threshold", "near_cut", "sensitivity", "specificity"]
    return {
        f"{split}/per_class": wandb.Table(columns=columns, data=rows),
        f"{split}/confusion_matrix_chart": wandb.plot.confusion_matrix(
            y_true=result.targets.tolist(),
            preds=result.preds.tolist(),
            class_names=list(GRADE_NAMES),
            title=f"{split}: confusion matrix ({document['decision']})",
        ),
        f"{split}/roc_chart": roc_chart(result, split),
        f"{split}/operating_points": wandb.Table(
            columns=point_columns, data=[[p.get(c) for c in point_columns] for p in points]
        ),
        **{f"{split}/{name}": wandb.Image(str(out / f"{name}.png")) for name in figures},
    }
