"""Fit an adaptation model on embeddings and evaluate it exactly as ``drgrade test`` evaluates a model.

The decision rule (temperature, operating points, referral cut) is fitted on the validation
split's logits, the test split is decided by it, and ``metrics.json`` / ``predictions.csv`` are
written by the same functions as ``EvaluationWriter``'s: one schema for every model, so the
protocol report (and ``drgrade report``) compares an adapter with the image models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from drgrade.callbacks.evaluation import _finite, metrics_document, prediction_rows
from drgrade.data.sources import NAMES_PATIENTS, Record
from drgrade.decision.rule import DecisionRule
from drgrade.embeddings import Embeddings
from drgrade.evaluation.bootstrap import BootstrapSpec
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.summary import clinical_sections
from drgrade.files import atomic_write_text
from drgrade.predictions import write_predictions
from drgrade.protocols.adapters import ADAPTERS


def rows_of(splits: Sequence[str], split: str) -> np.ndarray:
    """Positions of the rows in ``split``."""
    return np.flatnonzero(np.asarray(splits) == split)


def records_of(embeddings: Embeddings, rows: np.ndarray) -> list[Record]:
    """The embedded images of ``rows`` as records (path, grade, source, patient)."""
    frame = embeddings.frame.iloc[rows]
    return [
        Record(Path(f), int(g), s, p)
        for f, g, s, p in zip(frame["file"], frame["grade"], frame["source"], frame["patient"], strict=True)
    ]


def patient_codes(records: Sequence[Record]) -> torch.Tensor:
    """Each record's patient as a small integer (the decision rule's cross-fitting groups)."""
    return torch.from_numpy(np.unique([r.patient_id for r in records], return_inverse=True)[1]).long()


def fit_adapter(adapter, embeddings: Embeddings, grades: np.ndarray, train: np.ndarray, val: np.ndarray):
    """``adapter`` fitted on the ``train`` rows, its choices made on the ``val`` rows."""
    return adapter.fit(
        embeddings.vectors(train),
        grades[train],
        embeddings.vectors(val),
        grades[val],
        text_classifiers=embeddings.metadata.get("text_classifiers"),
        logit_scale=embeddings.metadata.get("logit_scale") or 100.0,  # none for a CNN: CLIP's usual
    )


def evaluate_adapter(
    model: str,
    embeddings: Embeddings,
    splits: Sequence[str],
    out: Path,
    seed: int = 0,
    spec: BootstrapSpec | None = None,
) -> dict:
    """Fit ``model`` on the training rows, choose on validation, evaluate on test; returns metrics.json.

    Args:
        model: a name in ``ADAPTERS``.
        embeddings: the backbone's embeddings of every image.
        splits: each embeddings row's split (``train``, ``val``, ``test``, or anything else: unused).
        out: the run folder (metrics.json and predictions.csv are written there).
        seed: the model's seed.
        spec: the bootstrap of the test intervals.
    """
    adapter_class = ADAPTERS[model]
    train, val, test = (rows_of(splits, s) for s in ("train", "val", "test"))
    grades = embeddings.frame["grade"].to_numpy(dtype=np.int64, na_value=-1)
    adapter = fit_adapter(adapter_class(seed), embeddings, grades, train, val)
    rule = DecisionRule("none")
    rule.fit(
        torch.from_numpy(adapter.logits(embeddings.vectors(val))).float(),
        torch.from_numpy(grades[val]),
        patient_codes(records_of(embeddings, val)),
    )
    test_records = records_of(embeddings, test)
    logits = torch.from_numpy(adapter.logits(embeddings.vectors(test))).float()
    outputs = rule(logits)
    targets = torch.from_numpy(grades[test])
    result = SplitResult(
        "test",
        logits,
        outputs,
        rule.operating_flags(outputs.probabilities),
        targets,
        torch.arange(len(test)),
        patient_codes(test_records),
        compute_metrics(outputs.probabilities, targets, outputs.grade),
        extras={"adaptation": adapter.choices | {"train_images": len(train), "val_images": len(val)}},
    )
    extra = {"embeddings": embeddings.metadata["identity"]}
    return write_evaluation(result, rule, test_records, adapter_class, out, spec or BootstrapSpec(), extra)


def write_evaluation(
    result: SplitResult,
    rule: DecisionRule,
    records: list[Record],
    adapter_class,
    out: Path,
    spec,
    extra: dict,
) -> dict:
    """metrics.json and predictions.csv of a test result, as ``EvaluationWriter`` writes them.

    Args:
        result: the test split's logits, decisions and metrics.
        rule: the decision rule fitted on validation.
        records: the test images, in ``result`` order.
        adapter_class: the model's class (its name and display name).
        out: the run folder.
        spec: the bootstrap of the intervals.
        extra: further metrics.json entries.
    """
    described = rule.describe()
    patients, sources = [r.patient_id for r in records], [r.source for r in records]
    clinical = clinical_sections(result, patients, sources, described, spec, NAMES_PATIENTS)
    document = metrics_document(
        result,
        adapter_class.__name__,
        None,
        adapter_class.display_name,
        clinical | {"decision_rule": described} | extra,
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(_finite(document), indent=2))
    rows = prediction_rows(result, records, described["thresholds"])
    write_predictions(out / "predictions.csv", rows, adapter_class.display_name)
    return document
