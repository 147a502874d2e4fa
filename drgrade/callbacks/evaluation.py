"""``EvaluationWriter``: a validate/test run's results as files in the run directory (and W&B).

Files are written for every ``validate`` and ``test`` run, whatever loggers are configured, so
results never live only in a dashboard: ``metrics.json`` (point metrics with patient-level
bootstrap intervals, operating points, calibration, referral curves, per-source and per-patient
results, the exam decisions' ``patient_level`` figures), ``predictions.csv`` (the shared
prediction schema), ``exams.csv`` (per patient and eye: ``drgrade.exams``), ``confusion_matrix.png``,
``roc_curves.png``, ``reliability_diagram.png`` and ``referral_curves.png``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from scipy.special import softmax

from drgrade.callbacks.writer import RunWriter
from drgrade.data.sources import NAMES_PATIENTS
from drgrade.data.splits import images_identity
from drgrade.evaluation.clinical import REFERRAL_FRACTIONS
from drgrade.evaluation.metrics import SplitResult
from drgrade.evaluation.patients import patient_level, patient_referral_curve
from drgrade.evaluation.summary import PLAIN_BEFORE, clinical_sections
from drgrade.exams import write_exams
from drgrade.files import atomic_write_text, save_figure
from drgrade.grades import GRADES
from drgrade.predictions import (
    PredictionRow,
    checked_decisions,
    decided_row,
    operating_cut,
    write_predictions,
)
from drgrade.provenance import evaluation_record, pretraining_overlap
from drgrade.reporting.plots import confusion_figure, referral_figure, reliability_figure, roc_figure


def metrics_document(
    result: SplitResult,
    model: str,
    checkpoint: str | None,
    name: str | None = None,
    clinical: dict | None = None,
) -> dict:
    """The content of metrics.json.

    Args:
        result: the split's predictions and evaluations.
        model: the task class name.
        checkpoint: the evaluated checkpoint, or None.
        name: the model's display name (its column in reports).
        clinical: the sections of ``clinical_sections`` (intervals, operating points, ...).
    """
    document = {
        "stage": result.stage,
        "model": model,
        "model_name": name or model,
        "checkpoint": checkpoint,
        "decision": "thresholded" if result.argmax_evaluation is not None else "argmax",
        "thresholds": result.thresholds,
        "metrics": result.evaluation.metrics,
        "confusion_matrix": result.evaluation.confusion.tolist(),
        **(clinical or {}),
        **result.extras,
    }
    if result.argmax_evaluation is not None:
        document["argmax_metrics"] = result.argmax_evaluation.metrics
        document["argmax_confusion_matrix"] = result.argmax_evaluation.confusion.tolist()
    return document


def prediction_rows(
    result: SplitResult, records, thresholds: list[float], cuts: dict[str, float | None] | None = None
) -> list[PredictionRow]:
    """One row per evaluated image, in dataset order, with the rule's checked decision.

    Args:
        result: the split's logits and the rule's outputs (and P(DME) with a DME output).
        records: the split's records (dataset index -> record).
        thresholds: the rule's thresholds (each output is checked against them).
        cuts: the vtDR and DME cuts (``BaseTask.clinical_cuts``).
    """
    p_dme = None if result.p_dme is None else result.p_dme.tolist()
    decided = checked_decisions(result.outputs, thresholds, p_dme=p_dme, **(cuts or {}))
    rows = []
    for i, target, decision in zip(result.index.tolist(), result.targets.tolist(), decided, strict=True):
        record = records[i]
        row = PredictionRow(
            str(record.path),
            true_grade=target,
            source=record.source,
            patient_id=record.patient_id,
            eye=record.eye,
            field=record.field,
            true_dme=record.dme,
        )
        rows.append(decided_row(row, decision))
    return rows


class EvaluationWriter(RunWriter):
    """Writes metrics.json, predictions.csv, exams.csv and the split's figures.

    Args:
        folder: where the files go (default: the run folder).
        figures: also draw the split's figures (confusion matrix, ROC, reliability, referral).
    """

    def __init__(self, folder: str | Path | None = None, figures: bool = True) -> None:
        super().__init__(folder)
        self.figures = figures

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Files after ``drgrade validate``; during ``fit``, each epoch's W&B charts only."""
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._write(trainer, pl_module, "val")
            return
        result: SplitResult | None = pl_module.results.get("val")
        if trainer.sanity_checking or result is None or not trainer.is_global_zero:
            return
        document = metrics_document(result, type(pl_module).__name__, None, pl_module.display_name)
        _log_wandb(trainer, result, document, None, [])

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After ``drgrade test``."""
        self._write(trainer, pl_module, "test")

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        out = self.out(trainer)  # a collective under DDP: every rank must ask
        result: SplitResult | None = pl_module.results.get(split)
        if result is None or not trainer.is_global_zero:
            return
        checkpoint = str(trainer.ckpt_path) if trainer.ckpt_path else None
        split_records = trainer.datamodule.records_of(split)
        evaluated = [split_records[i] for i in result.index.tolist()]
        rule = pl_module.rule.describe()
        clinical = clinical_sections(
            result,
            [r.patient_id for r in evaluated],
            [r.source for r in evaluated],
            rule,
            pl_module.bootstrap(),
            NAMES_PATIENTS,
            pl_module.before_temperature,
        )
        identity = {
            "split": trainer.datamodule.split_identity,
            "evaluated": images_identity(evaluated),
            "provenance": evaluation_record(trainer, pl_module, self.origin),
        }
        if identity["provenance"]["untrained_baseline"]:
            identity["untrained_baseline"] = True
            rank_zero_warn(f"{pl_module.display_name} was evaluated untrained: a baseline, not a result")
        overlap = pretraining_overlap(pl_module, [r.source for r in evaluated])
        if overlap:
            identity["pretraining_overlap"] = overlap
            rank_zero_warn(f"pretraining overlap: {overlap['note']}")
        rows = prediction_rows(result, split_records, rule["thresholds"], pl_module.clinical_cuts())
        write_predictions(out / "predictions.csv", rows, pl_module.display_name, self.origin)
        patients = exam_sections(out / "exams.csv", [row.as_dict() for row in rows], rule)
        document = metrics_document(
            result,
            type(pl_module).__name__,
            checkpoint,
            pl_module.display_name,
            clinical | {"decision_rule": rule} | identity,
        )
        document["patient_level"] = patients["patient_level"]
        document["referral"]["patients"] = patients["curve"]
        atomic_write_text(out / "metrics.json", json.dumps(_finite(document), indent=2))
        name = f"{pl_module.display_name}, {split}"
        figures = split_figures(result, document, name) if self.figures else {}
        for name, figure in figures.items():
            save_figure(figure, out / f"{name}.png", dpi=120)
            plt.close(figure)
        _log_wandb(trainer, result, document, out, list(figures))
        print(f"evaluation files written to {out}")


def exam_sections(path: Path, rows: list[dict[str, str]], rule: dict) -> dict:
    """Write the split's exams.csv; its patient-level figures at the rule's referral cut, and their curve.

    Args:
        path: where exams.csv goes.
        rows: the split's prediction rows (``COLUMNS`` keys).
        rule: the decision rule's description (its referral cut is reported beside the figures).
    """
    exams = write_exams(path, rows)
    return {
        "patient_level": patient_level(exams, operating_cut(rule, "referable")),
        "curve": patient_referral_curve(rows, REFERRAL_FRACTIONS),
    }


def split_figures(result: SplitResult, document: dict, name: str) -> dict:
    """A split's figures by file stem, each titled with the model and split (``name``).

    Args:
        result: the split's evaluation.
        document: its metrics.json content (decision rule, referral curves).
        name: ``<model>, <split>``.
    """
    evaluation = result.evaluation
    aurocs = [evaluation.metrics[f"auroc_{g.short}"] for g in GRADES]
    before = softmax(result.logits.double().numpy(), axis=1)
    return {
        "confusion_matrix": confusion_figure(evaluation.confusion, f"{name}: {document['decision']}"),
        "roc_curves": roc_figure(evaluation.roc, aurocs, f"{name}: one-vs-rest ROC"),
        "reliability_diagram": reliability_figure(
            before,
            result.probs.double().numpy(),
            result.targets.numpy(),
            name,
            decided=result.preds.numpy() if result.argmax_evaluation is not None else None,
            before_label=before_label(document.get("calibration_error", {}).get("before", "")),
        ),
        "referral_curves": referral_figure(document["referral"], f"{name}: uncertainty referral"),
    }


def before_label(before: str) -> str:
    """The reliability diagram's name for "before": an ensemble's is after its members' temperatures."""
    return "before temperature scaling" + (f" ({before})" if before and before != PLAIN_BEFORE else "")


def _finite(value):
    """JSON-safe copy: NaN and infinity become null (strict JSON has neither)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _log_wandb(
    trainer: L.Trainer, result: SplitResult, document: dict, out: Path | None, figures: list[str]
) -> None:
    """The evaluation as W&B charts, tables and images, to every W&B logger of the run."""
    loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
    if not loggers:
        return
    from drgrade.callbacks.wandb_charts import evaluation_entries

    entries = evaluation_entries(result, result.stage, document, out, figures)
    for logger in loggers:
        logger.experiment.log(entries)
