"""An ONNX graph's P(DME) is data too: its output, its cut in the metadata, and each value are checked."""

from __future__ import annotations

import csv
import json

import pytest

from drgrade.errors import ModelFileError
from drgrade.serving.runner import OnnxGrader
from drgrade.serving.runner import main as deploy_main
from tests.integration.test_fail_safe import SANE, drgrade_metadata, fake_export


def deployed(model, folder, out) -> dict:
    deploy_main([str(model), str(folder), "--out", str(out), "--workers", "0"])
    (row,) = list(csv.DictReader(out.read_text().splitlines()))
    return row


def test_p_dme_decides_dme_and_referable_dr_with_the_cut_in_the_metadata(one_photograph, tmp_path):
    outputs = SANE | {"p_referable": 0.1, "referable_by_score": 0.0, "grade": 2.0, "p_dme": 0.7}
    model = fake_export(tmp_path / "m.onnx", outputs, drgrade_metadata(dme_cut="0.5"))
    row = deployed(model, one_photograph, tmp_path / "p.csv")
    assert (row["p_dme"], row["dme"], row["referable_dr"], row["action"]) == (
        "0.699999988",
        "1",
        "1",
        "refer",
    )
    unfitted = fake_export(tmp_path / "n.onnx", outputs, drgrade_metadata(dme_cut="null"))
    row = deployed(unfitted, one_photograph, tmp_path / "q.csv")  # no cut fitted: P(DME) shown, no flag
    assert (row["p_dme"], row["dme"], row["referable_dr"]) == ("0.699999988", "", "0")


@pytest.mark.parametrize(
    ("outputs", "metadata", "said"),
    [
        (SANE | {"p_dme": 0.5}, drgrade_metadata(), "its dme_cut metadata and its 'p_dme' output"),
        (SANE, drgrade_metadata(dme_cut="0.5"), "its dme_cut metadata and its 'p_dme' output"),
        (SANE | {"p_dme": 0.5}, drgrade_metadata(dme_cut="2"), "dme_cut 2 is not a probability"),
        (SANE | {"p_dme": 0.5}, drgrade_metadata(dme_cut='"high"'), "dme_cut 'high' is not a probability"),
        (
            SANE | {"distance": 1.0, "p_dme": 0.5},  # P(DME) comes before the distance
            drgrade_metadata(dme_cut="0.5", typicality=json.dumps({"fitted": True, "cut": 3.0})),
            "and optionally 'p_dme', then 'distance'",
        ),
    ],
)
def test_a_dme_output_or_cut_that_does_not_fit_is_refused_by_name(outputs, metadata, said, tmp_path):
    with pytest.raises(ModelFileError, match="was refused") as refused:
        OnnxGrader(fake_export(tmp_path / "m.onnx", outputs, metadata))
    assert said in str(refused.value)


def test_a_p_dme_that_is_not_a_probability_gives_no_grade(one_photograph, tmp_path):
    model = fake_export(tmp_path / "m.onnx", SANE | {"p_dme": float("nan")}, drgrade_metadata(dme_cut="0.5"))
    with pytest.raises(SystemExit) as stop:  # nothing could be graded
        deployed(model, one_photograph, tmp_path / "p.csv")
    (row,) = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert stop.value.code == 2 and row["grade"] == "" and "P(DME) nan is not a probability" in row["error"]
    assert (row["action"], row["refer_to_grader"]) == ("to grader", "1")
