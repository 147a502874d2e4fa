"""``drgrade gate``: the quality gate against human gradability labels, with known answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from drgrade.cli import main
from drgrade.data.images import write_rgb
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.evaluation.gate import verdict_kind
from drgrade.evaluation.proportions import wilson_interval


@pytest.fixture(scope="module")
def messidor(tmp_path_factory) -> Path:
    """A Messidor-2 download of 10: 8 gradable (one is a picture of an astronaut), 2 rejected (one dark).

    The gate should refuse the dark reject (right), pass the other reject (wrong) and refuse the
    astronaut the graders called gradable (wrong): sensitivity 1/2, specificity 7/8.
    """
    root = tmp_path_factory.mktemp("gate") / "messidor2"
    (root / "IMAGES").mkdir(parents=True)
    rows = []
    for i in range(10):
        image, _ = render_fundus(i % 5, 128, seeded_rng(3, 1, i))
        if i == 0:
            image = skdata.astronaut()[::3, ::3]
        if i == 8:
            image = (image * 0.08).astype(np.uint8)
        write_rgb(root / "IMAGES" / f"IM{i:04d}.png", image)
        gradable = 0 if i >= 8 else 1
        rows.append((f"IM{i:04d}.png", i % 5 if gradable else "", 0, gradable))
    with (root / "messidor_data.csv").open("w", newline="") as f:
        csv.writer(f).writerows(
            [("image_id", "adjudicated_dr_grade", "adjudicated_dme", "adjudicated_gradable"), *rows]
        )
    return root


def test_gate_reports_sensitivity_specificity_confusion_and_sheet(messidor, tmp_path, capsys):
    out = tmp_path / "gate"
    main(["gate", "--data.roots.messidor2", str(messidor), "--data.num_workers", "0", "--out", str(out)])
    result = json.loads((out / "gate.json").read_text())
    assert (result["images"], result["human_reject"], result["human_gradable"]) == (10, 2, 8)
    assert result["sensitivity"] == 0.5 and result["sensitivity_ci"] == pytest.approx(wilson_interval(1, 2))
    assert result["specificity"] == 7 / 8 and result["specificity_ci"] == pytest.approx(wilson_interval(7, 8))
    assert result["confusion"] == {
        "reject": {"passed": 1, "refused": 1},
        "gradable": {"passed": 7, "refused": 1},
    }
    assert result["misjudged"] == 2
    verdicts = result["per_verdict"]
    assert verdicts["passed"]["images"] == 8 and verdicts["passed"]["human_reject"] == 1
    refusals = {k: v for k, v in verdicts.items() if k != "passed"}
    assert sum(v["human_reject"] for v in refusals.values()) == 1  # the dark one
    assert sum(v["human_gradable"] for v in refusals.values()) == 1  # the astronaut
    with (out / "gate_confusion.csv").open() as f:
        assert list(csv.reader(f)) == [
            ["graders", "gate passed", "gate refused"],
            ["reject", "1", "1"],
            ["gradable", "7", "1"],
        ]
    with (out / "gate_images.csv").open() as f:
        wrong = sorted(r["path"].rsplit("/", 1)[-1] for r in csv.DictReader(f) if r["misjudged"] == "1")
    assert wrong == ["IM0000.png", "IM0009.png"]
    sheet = Image.open(out / "gate_misjudged.png")
    assert sheet.size[0] > 500
    printed = capsys.readouterr().out
    assert "sensitivity for reject: 0.500" in printed and "specificity for reject: 0.875" in printed


def test_gate_judges_with_the_configured_limits(messidor, tmp_path):
    """``--data.quality.<field>`` moves the gate verb's lines as it does every other verb's."""
    out = tmp_path / "gate"
    args = ["gate", "--data.roots.messidor2", str(messidor), "--data.num_workers", "0", "--out", str(out)]
    main([*args, "--data.quality.min_side", "4000", "--sheet", "0"])  # no photograph is that large
    result = json.loads((out / "gate.json").read_text())
    assert result["confusion"] == {
        "reject": {"passed": 0, "refused": 2},
        "gradable": {"passed": 0, "refused": 8},
    }


def test_gate_needs_gradability_labels(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gate", "--data.roots.aptos2019", str(synthetic / "aptos2019"), "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "gradability label" in capsys.readouterr().err


def test_a_misspelt_data_option_or_source_name_is_answered(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["gate", "--data.rots.messidor2", "x"])
    assert exit_.value.code == 2 and "did you mean --data.roots" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["gate", "--data.roots.messidr2", "x"])
    said = capsys.readouterr().err
    # answered by the data module, or before torch loads by the option names kept at install
    assert exit_.value.code == 2 and "messidr2" in said and "did you mean" in said and "messidor2?" in said


def test_verdict_kind_drops_the_evidence():
    assert verdict_kind("") == "passed"
    reason = "ungradable: not a fundus photograph (not red-dominant) (fundus fraction 0.8, red ratio 1.1)"
    assert verdict_kind(reason) == "not a fundus photograph (not red-dominant)"
    assert verdict_kind("file not found") == "file not found"
