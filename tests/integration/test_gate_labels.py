"""``drgrade gate`` reads each dataset's gradability label: EyeQ's levels, DeepDRiD's ``Overall quality``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from drgrade.cli import main
from drgrade.data.images import write_rgb
from drgrade.data.sources.deepdrid import HEADER, REGULAR
from drgrade.data.sources.deepdrid import read as read_deepdrid
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.evaluation.proportions import wilson_interval


def photograph(kind: str, seed: int) -> np.ndarray:
    """A gradable synthetic photograph, a dark copy of one (the gate refuses it) or an astronaut."""
    image, _ = render_fundus(seed % 5, 128, seeded_rng(4, 2, seed))
    if kind == "dark":
        return (image * 0.08).astype(np.uint8)
    return skdata.astronaut()[::3, ::3] if kind == "astronaut" else image


@pytest.fixture(scope="module")
def eyeq(tmp_path_factory) -> Path:
    """An EyeQ folder of 7: 5 good or usable (one an astronaut), 2 rejected (one dark)."""
    root = tmp_path_factory.mktemp("eyeq")
    sheets = {
        "Label_EyeQ_train.csv": [
            ("10_left", 0, "ok"),
            ("10_right", 1, "ok"),
            ("11_left", 0, "ok"),
            ("11_right", 2, "dark"),
            ("12_left", 2, "ok"),
            ("12_right", 1, "astronaut"),
        ],
        "Label_EyeQ_test.csv": [("13_left", 0, "ok")],
    }
    for (sheet, rows), folder in zip(sheets.items(), ("train", "test"), strict=True):
        lines = [("", "image", "quality", "DR_grade")]
        for i, (name, quality, kind) in enumerate(rows):
            write_rgb(root / folder / f"{name}.jpeg", photograph(kind, i))
            lines.append((i, f"{name}.jpeg", quality, i % 5))
        with (root / sheet).open("w", newline="") as f:
            csv.writer(f).writerows(lines)
    return root


@pytest.fixture(scope="module")
def deepdrid(tmp_path_factory) -> Path:
    """A DeepDRiD folder of 8 (two patients, four photographs each): 2 of poor quality (one dark)."""
    root = tmp_path_factory.mktemp("deepdrid")
    good = {"r1": (1, "ok"), "r2": (1, "ok")}
    patients = {  # part: (patient, {image: (Overall quality, picture)})
        "regular-fundus-training": ("100", {"l1": (1, "ok"), "l2": (0, "dark"), **good}),
        "regular-fundus-validation": ("101", {"l1": (0, "ok"), "l2": (1, "ok"), **good}),
    }
    for part, (patient, images) in patients.items():
        rows = [HEADER]
        for i, (image_id, (quality, kind)) in enumerate(images.items()):
            name = f"{patient}_{image_id}"
            write_rgb(root / REGULAR / part / "Images" / patient / f"{name}.jpg", photograph(kind, 10 + i))
            grades = [2, ""] if image_id.startswith("l") else ["", 2]
            path = f"\\{REGULAR}\\{part}\\Images\\{patient}\\{name}.jpg"
            scores = (3, 4, 5) if quality else (1, 4, 1)  # clarity, field definition, artefact
            rows.append([patient, name, path, quality, *grades, 2, *scores])
        with (root / REGULAR / part / f"{part}.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    return root


def test_deepdrid_overall_quality_is_each_photographs_gradability(deepdrid):
    found = read_deepdrid(deepdrid, verify_images=False)
    labels = {r.path.stem: r.gradability for r in found.records}
    labels |= {e.record.path.stem: e.record.gradability for e in found.excluded}
    assert labels == {
        "100_l1": "gradable",
        "100_l2": "reject",
        "100_r1": "gradable",
        "100_r2": "gradable",
        "101_l1": "reject",
        "101_l2": "gradable",
        "101_r1": "gradable",
        "101_r2": "gradable",
    }
    assert all("poor quality by the graders" in e.reason for e in found.excluded)


def test_gate_is_measured_against_eyeq_and_deepdrid_labels(eyeq, deepdrid, tmp_path, capsys):
    """15 labelled photographs: 4 rejected by graders (the gate refuses the 2 dark ones), 11 gradable
    (the gate refuses the astronaut): sensitivity 2/4, specificity 10/11, each with its Wilson interval."""
    out = tmp_path / "gate"
    main(
        [
            "gate",
            "--data.roots.eyeq",
            str(eyeq),
            "--data.roots.deepdrid",
            str(deepdrid),
            "--data.num_workers",
            "0",
            "--out",
            str(out),
            "--sheet",
            "0",
        ]
    )
    result = json.loads((out / "gate.json").read_text())
    assert (result["images"], result["human_reject"], result["human_gradable"]) == (15, 4, 11)
    assert result["sensitivity"] == 0.5 and result["sensitivity_ci"] == pytest.approx(wilson_interval(2, 4))
    assert result["specificity"] == pytest.approx(10 / 11)
    assert result["specificity_ci"] == pytest.approx(wilson_interval(10, 11))
    assert result["confusion"] == {
        "good": {"passed": 3, "refused": 0},
        "usable": {"passed": 1, "refused": 1},
        "reject": {"passed": 2, "refused": 2},
        "gradable": {"passed": 6, "refused": 0},
    }
    with (out / "gate_images.csv").open() as f:
        rows = {Path(r["path"]).stem: r for r in csv.DictReader(f)}
    assert {name for name, r in rows.items() if r["misjudged"] == "1"} == {"12_left", "12_right", "101_l1"}
    assert (rows["100_l2"]["source"], rows["100_l2"]["graders"], rows["100_l2"]["gate"]) == (
        "deepdrid",
        "reject",
        "under-exposed, too dark",
    )
    assert "sensitivity for reject: 0.500" in capsys.readouterr().out
