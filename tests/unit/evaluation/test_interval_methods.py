"""One count, one interval: proportions get Wilson everywhere, the rest keep the bootstrap."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from drgrade.callbacks.evaluation import metrics_document
from drgrade.cli import main
from drgrade.decision.rule import DecisionRule
from drgrade.evaluation.bootstrap import BootstrapSpec
from drgrade.evaluation.clinical import wilson_interval
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.summary import clinical_sections


def perfect_specificity_run(directory):
    """88 test images: 30 referable (29 decided referable), 58 not (all decided below moderate)."""
    targets = torch.tensor([0] * 40 + [1] * 18 + [2] * 15 + [3] * 8 + [4] * 7)
    preds = targets.clone()
    preds[58] = 1  # one referable eye missed: 29 of 30
    logits = torch.nn.functional.one_hot(preds, 5).float() * 4
    rule = DecisionRule("none")
    outputs = rule(logits)
    index = torch.arange(len(targets))
    result = SplitResult(
        "test",
        logits,
        outputs,
        rule.operating_flags(outputs.probabilities),
        targets,
        index,
        index // 2,
        compute_metrics(outputs.probabilities, targets, outputs.grade),
    )
    patients = [f"p{i // 2}" for i in range(len(targets))]
    clinical = clinical_sections(
        result,
        patients,
        ["messidor2"] * len(targets),
        rule.describe(),
        BootstrapSpec(200),
        {"messidor2": True},
    )
    document = metrics_document(result, "FCNCLIP", None, "FCN-CLIP", clinical)
    directory.mkdir()
    (directory / "metrics.json").write_text(json.dumps(document))
    return document


def test_a_proportion_at_one_has_a_wilson_interval_not_a_collapsed_bootstrap(tmp_path):
    document = perfect_specificity_run(tmp_path / "run")
    intervals = document["confidence_intervals"]
    assert intervals["referable_specificity"] == pytest.approx(wilson_interval(58, 58))
    assert intervals["referable_specificity"][0] == pytest.approx(0.938, abs=1e-3)  # not 1.000-1.000
    assert intervals["referable_sensitivity"] == pytest.approx(wilson_interval(29, 30))
    assert intervals["accuracy"] == pytest.approx(wilson_interval(87, 88))
    assert intervals["recall_moderate"] == pytest.approx(wilson_interval(14, 15))
    assert intervals["precision_mild"] == pytest.approx(wilson_interval(18, 19))
    methods = document["interval_methods"]
    assert {"accuracy", "referable_specificity", "precision_no"} <= set(methods["wilson"])
    assert {"qwk", "auroc_macro", "macro_f1", "f1_no"} <= set(methods["bootstrap"])
    assert not set(methods["wilson"]) & set(methods["bootstrap"])
    per_source = document["per_source"]["messidor2"]["confidence_intervals"]
    assert per_source["referable_specificity"] == pytest.approx(wilson_interval(58, 58))


def test_the_report_says_which_method_each_figure_has(tmp_path, capsys):
    perfect_specificity_run(tmp_path / "run")
    main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    table3 = {r[0]: r[1:] for r in csv.reader((tmp_path / "out" / "table3.csv").read_text().splitlines())}
    assert table3["Referable specificity (by grade)"] == ["1.000 (0.938-1.000)"]
    assert table3["Referable sensitivity (by grade)"] == ["0.967 (0.833-0.994)"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Wilson score 95% interval of the image counts for proportions" in text
    assert "95% percentile bootstrap over patients for the rest" in text
    assert np.isfinite(float(table3["QWK"][0].split()[0]))
