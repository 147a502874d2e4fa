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
    spec = spec or BootstrapSpec()
    adapter_class = ADAPTERS[model]
    train, val, test = (rows_of(splits, s) for s in ("train", "val", "test"))
    grades = embeddings.frame["grade"].to_numpy(dtype=np.int64, na_value=-1)
    adapter = adapter_class(seed).fit(
        embeddings.vectors(train),
        grades[train],
        embeddings.vectors(val),
        grades[val],
        text_classifiers=embeddings.metadata.get("text_classifiers"),
        logit_scale=embeddings.metadata.get("logit_scale", 100.0),
    )
    val_records, test_records = records_of(embeddings, val), records_of(embeddings, test)
    rule = DecisionRule("none")
    rule.fit(
        torch.from_numpy(adapter.logits(embeddings.vectors(val))).float(),
        torch.from_numpy(grades[val]),
        patient_codes(val_records),
    )
    logits = torch.from_numpy(adapter.logits(embeddings.vectors(test))).float()
    targets = torch.from_numpy(grades[test])
    outputs = rule(logits)
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
    described = rule.describe()
    clinical = clinical_sections(
        result,
        [r.patient_id for r in test_records],
        [r.source for r in test_records],
        described,
        spec,
        NAMES_PATIENTS,
    )
    document = metrics_document(
        result,
        adapter_class.__name__,
        None,
        adapter_class.display_name,
        clinical | {"decision_rule": described, "embeddings": embeddings.metadata["identity"]},
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(_finite(document), indent=2))
    rows = prediction_rows(result, test_records, described["thresholds"])
    write_predictions(out / "predictions.csv", rows, adapter_class.display_name)
    return document
