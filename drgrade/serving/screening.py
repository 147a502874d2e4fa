"""Grade a handful of files with a trained task, as ``drgrade predict`` does, plus attention overlays.

The screening web page (``drgrade serve``) answers through this module: the same dataset
(quality gate, fundus crop, resize, normalisation), the same probabilities, decision rule and
referral cuts as ``predict``, so a grade shown in the browser equals the grade in a
predictions.csv for the same file (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import UNKNOWN, FundusDataset
from drgrade.data.quality import DEFAULT_LIMITS
from drgrade.data.sources import Record
from drgrade.predictions import PredictionRow, checked_decisions, decided_row
from drgrade.reporting.overlays import display_images
from drgrade.tasks import BaseTask


@dataclass
class Screening:
    """One file's answer: its prediction row, and the preprocessed image with the attention map."""

    row: PredictionRow
    image: np.ndarray | None = None
    attention: np.ndarray | None = None
    method: str = ""


def screen_files(
    task: BaseTask,
    paths: Sequence[Path],
    image_size: int,
    batch_size: int = 8,
    quality_model=None,
    origin: str = "",
) -> list[Screening]:
    """Grade ``paths`` (quality gate and typicality check on) with ``task``; refused files get the reason.

    Args:
        task: a trained task in eval mode.
        paths: the image files.
        image_size: the model's input size.
        batch_size: images per forward pass.
        quality_model: the learned gate (a ``QualityModel`` or an exported ``OnnxQualityModel``):
            what the rule gate passes and it rejects is not graded, as in ``predict``.
        origin: the task's checkpoint as result files name it (``checkpoint_label``).
    """
    records = [Record(Path(p), UNKNOWN, "", str(p)) for p in paths]
    transform = EvalTransform(task.normalisation())
    dataset = FundusDataset(
        records, image_size, transform, keep_errors=True, quality=DEFAULT_LIMITS, quality_model=quality_model
    )
    thresholds, cuts = task.rule.thresholds.tolist(), task.clinical_cuts()
    answers: list[Screening] = []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        maps, logits, method = task.attention_maps(batch["image"])  # Grad-CAM needs autograd: no no_grad
        if task.hparams.tta != "none":  # decide on the augmented views (the map stays the image's own)
            logits = task.decision_logits(batch["image"])
        p_dme = None
        with torch.no_grad():  # the attention pass gives grade logits only
            if task.has_dme:
                p_dme = torch.sigmoid(task.forward_with_dme(batch["image"])[1]).tolist()
            # inputs unlike any training photograph get the reason, not a grade
            atypical = task.typicality.reasons(task.typicality(task.embedding(batch["image"])))
        decided = checked_decisions(task.rule(logits.detach()), thresholds, p_dme=p_dme, **cuts)
        pictures = display_images(batch["image"], *task.normalisation())
        for i, index in enumerate(batch["index"].tolist()):
            path, quality = str(records[index].path), batch["quality"][i].tolist()
            error = batch["error"][i] or atypical[i]
            row = PredictionRow(
                path, error=error, quality=quality, model=task.display_name, checkpoint=origin
            )
            if error or isinstance(decided[i], str):
                answers.append(Screening(decided_row(row, decided[i]) if not error else row))
                continue
            row.decision = decided[i]
            answers.append(Screening(row, pictures[i], maps[i].detach().cpu().numpy(), method))
    return answers


def screen_files_onnx(grader, paths: Sequence[Path]) -> list[Screening]:
    """Grade ``paths`` with an exported ONNX model (the runner's own path; an ONNX model has no attention).

    The card shows the runner's own network input (decoded once, as the runner graded it).

    Args:
        grader: an ``OnnxGrader``.
        paths: the image files.
    """
    inputs: list = []
    rows = grader.grade_files(paths, inputs=inputs)
    mean, std = grader.mean / 255, grader.std / 255
    answers = []
    for row, tensor in zip(rows, inputs, strict=True):
        picture = None if tensor is None else display_images(torch.from_numpy(tensor[None]), mean, std)[0]
        answers.append(Screening(row, picture, None, ""))
    return answers
