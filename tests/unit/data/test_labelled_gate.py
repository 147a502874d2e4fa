"""Labelled data keeps what graders graded: the quality gate's verdict is recorded, not acted on.

A labelled photograph is left out only by its dataset's own gradability label (or when it cannot be
decoded at all) unless ``data.quality_gate: exclude`` is asked for; unlabelled input stays gated.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from drgrade.cli import main
from drgrade.data import DRDataModule
from drgrade.data.images import write_rgb
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.errors import DataValidationError
from drgrade.reporting.provenance import data_text
from tests.conftest import cli_args

#: Photographs a grader graded that the rule gate refuses: a very dark one and a non-fundus picture.
REFUSED = ("dark.png", "astronaut.png")


@pytest.fixture(scope="module")
def graded_sheet(tmp_path_factory) -> Path:
    """A ``path,grade`` sheet of 10 photographs, two of which the quality gate refuses."""
    folder = tmp_path_factory.mktemp("graded")
    rows = []
    for i in range(8):
        image, _ = render_fundus(i % 5, 128, seeded_rng(7, 9, i))
        write_rgb(folder / f"fundus{i}.png", image)
        rows.append((f"fundus{i}.png", i % 5))
    dark, _ = render_fundus(1, 128, seeded_rng(7, 9, 99))
    write_rgb(folder / REFUSED[0], (dark * 0.08).astype(np.uint8))
    write_rgb(folder / REFUSED[1], skdata.astronaut()[::3, ::3])
    rows += [(REFUSED[0], 1), (REFUSED[1], 0)]
    with (folder / "graded.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "grade"), *rows])
    return folder / "graded.csv"


def datamodule(sheet: Path, **options) -> DRDataModule:
    data = DRDataModule(
        csv_sources=[str(sheet)], image_size=64, num_workers=0, cache=False, dedupe=False, **options
    )
    data.load_records()
    return data


def test_labelled_photographs_are_kept_with_the_gates_verdict(graded_sheet):
    data = datamodule(graded_sheet)
    assert len(data.records) == 10 and not data.excluded  # the sheet's n, nothing left out
    assert sorted(p.name for p in data.gate_verdicts) == sorted(REFUSED)
    assert all(v.startswith("ungradable: ") for v in data.gate_verdicts.values())
    assert data.gate_flagged() == {"graded": 2}


def test_exclude_leaves_them_out_and_error_stops(graded_sheet):
    data = datamodule(graded_sheet, quality_gate="exclude")
    assert len(data.records) == 8 and not data.gate_verdicts
    assert sorted(e.record.path.name for e in data.excluded) == sorted(REFUSED)
    assert all(e.kind == "quality" for e in data.excluded)
    flagged = datamodule(graded_sheet, quality_gate="flag")
    assert len(flagged.records) == 10 and len(flagged.gate_verdicts) == 2
    with pytest.raises(DataValidationError, match=r"astronaut\.png"):
        datamodule(graded_sheet, ungradable="error")


def test_unlabelled_folder_is_always_gated(graded_sheet):
    data = DRDataModule(predict_dir=str(graded_sheet.parent), image_size=64, num_workers=0, cache=False)
    data.setup("predict")
    errors = {
        Path(data.datasets["predict"].records[i].path).name: data.datasets["predict"][i]["error"]
        for i in range(len(data.datasets["predict"]))
    }
    assert {name for name, error in errors.items() if error} == set(REFUSED)


def test_fit_on_labelled_data_keeps_the_datasets_n(synthetic, graded_sheet, tmp_path):
    """``drgrade fit`` trains on every graded photograph; split.csv says which ones the gate doubts."""
    main(cli_args("fit", "zero_shot", synthetic, tmp_path, "--data.csv_sources", f"[{graded_sheet}]"))
    with next(tmp_path.rglob("split.csv")).open(newline="") as f:
        rows = list(csv.DictReader(f))
    sheet = [r for r in rows if r["source"] == "graded"]
    assert len(sheet) == 10 and all(r["split"] != "excluded" for r in sheet)
    assert sorted(Path(r["path"]).name for r in sheet if r["gate"]) == sorted(REFUSED)
    # the run's provenance counts them per source, and the report says so
    data = json.loads(next(tmp_path.rglob("metrics.json")).read_text())["provenance"]["data"]
    assert data["quality_gate"] == {"mode": "keep", "kept_refused": {"graded": 2}}
    assert "kept though the quality gate refuses them (keep): 2 graded" in data_text(data)
    # only the dataset's own labels exclude: Messidor-2's adjudicated-ungradable photographs
    excluded = [r for r in rows if r["split"] == "excluded"]
    assert excluded and all("adjudicated_gradable 0" in r["note"] and not r["gate"] for r in excluded)
