"""``drgrade report`` prints names and numbers from metrics.json as literal, range-checked text."""

from __future__ import annotations

import csv
import json

import torch

from drgrade.cli import main
from drgrade.reporting.markup import md, number
from tests.integration.test_report_and_protocol import fake_run

HOSTILE = '<img src=x onerror="alert(1)">|x\n# Injected heading [click](http://evil.example) =cmd'


def test_names_from_a_metrics_file_cannot_become_markup(tmp_path):
    targets = torch.tensor([0, 0, 1, 2, 3, 4])
    run = fake_run(tmp_path / "a", "FCNCLIP", targets.clone(), targets)
    document = json.loads((run / "metrics.json").read_text())
    document["model_name"] = HOSTILE
    document["metrics"] |= {"accuracy": float("nan"), "qwk": 1e308, "referable_sensitivity": -5}
    (run / "metrics.json").write_text(json.dumps(document))
    main(["report", str(run), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "<img" not in text and "&lt;img" in text
    assert not any(line.startswith("# Injected") for line in text.splitlines())
    assert "[click](http" not in text and "\\[click\\]" in text  # no link
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = table[0]
    assert all(line.count(" | ") == header.count(" | ") for line in table[:3])  # no cell split by `|`
    rows = {line.split(" | ")[0]: line for line in table}
    assert "invalid (nan)" in rows["| Accuracy"] and "invalid (1e+308)" in rows["| QWK"]
    assert "invalid (-5)" in text
    cells = next(csv.reader((tmp_path / "out" / "table3.csv").read_text().splitlines()))
    assert not any(cell.startswith("=") for cell in cells)


def test_markup_and_ranges():
    assert md("a|b\nc<d>_e*") == "a\\|b c&lt;d&gt;\\_e\\*"
    assert number(0.5) == "0.500" and number(1.5) == "invalid (1.5)" and number(True) == "invalid (True)"
    assert number(-0.2, (-1, 1)) == "-0.200"
