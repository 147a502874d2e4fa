"""EyePACS, IDRiD and DDR readers, each through ``drgrade synth --layout``, then a fit/test on all five."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter

import pytest

from drgrade.cli import main
from drgrade.data.sources import lesion_images, load_sources
from drgrade.data.sources.ddr import read as read_ddr
from drgrade.data.sources.eyepacs import read as read_eyepacs
from drgrade.data.sources.idrid import read as read_idrid
from drgrade.data.splits import split_records
from drgrade.errors import DataValidationError
from tests.conftest import cli_args

LAYOUTS = ("eyepacs", "idrid", "ddr")


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    out = tmp_path_factory.mktemp("public")
    main(["synth", "--out", str(out), "--layout", *LAYOUTS, "--num_images", "40", "--image_size", "128"])
    return out


def test_each_reader_reads_its_published_layout(public):
    eyepacs = read_eyepacs(public / "eyepacs").records
    assert len(eyepacs) == 40 and Counter(r.official_split for r in eyepacs) == {"train": 32, "test": 8}
    assert {r.patient_id for r in eyepacs if r.path.stem.startswith("10_")} == {"eyepacs:10"}
    idrid = read_idrid(public / "idrid").records  # header "Risk of macular edema " and empty columns
    assert len(idrid) == 40 and Counter(r.official_split for r in idrid) == {"train": 32, "test": 8}
    found = read_ddr(public / "ddr")
    ddr = found.records
    assert len(ddr) == 38 and len(found.excluded) == 2  # two grade-5 (ungradable) images excluded
    assert Counter(r.official_split for r in ddr) == {"train": 23, "val": 7, "test": 8}


def test_eyepacs_pairs_and_official_splits_never_share_a_patient(public):
    roots = {name: public / name for name in LAYOUTS}
    records = load_sources(roots).records
    for official in (False, True):
        splits = split_records(records, official=official)
        by_patient: dict[str, set] = {}
        for record, split in zip(records, splits, strict=True):
            by_patient.setdefault(record.patient_id, set()).add(split)
        assert all(len(s) == 1 for s in by_patient.values())
    splits = split_records(records, official=True)
    published = [(r.official_split, s) for r, s in zip(records, splits, strict=True) if r.source == "ddr"]
    assert all(a == b for a, b in published)  # DDR publishes train / valid / test: used as is
    idrid_val = [s for r, s in zip(records, splits, strict=True) if r.source == "idrid" and s == "val"]
    assert 3 <= len(idrid_val) <= 8  # IDRiD has no validation part: carved from its training set


def _break(root, relative, old, new):
    path = root / relative
    path.write_text(path.read_text().replace(old, new, 1))


def test_bad_input_lists_every_problem_and_changes_nothing(public, tmp_path, capsys):
    for name in LAYOUTS:
        shutil.copytree(public / name, tmp_path / name)
    _break(tmp_path, "eyepacs/trainLabels.csv", "10_right,", "10_right,7")  # grade outside 0-4
    _break(tmp_path, "eyepacs/trainLabels.csv", "13_left", "10_left")  # duplicate id
    sheet = "idrid/B. Disease Grading/2. Groundtruths/b. IDRiD_Disease Grading_Testing Labels.csv"
    _break(tmp_path, sheet, "Retinopathy grade", "DR grade")  # missing column
    (tmp_path / "ddr/DR_grading/test.txt").write_text("nonexistent.jpg 2\n")  # unknown image
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.suffix in (".csv", ".txt")}
    with pytest.raises(DataValidationError) as error:
        load_sources({name: tmp_path / name for name in LAYOUTS}, verify_images=False)
    message = str(error.value)
    assert "trainLabels.csv row 3: grade '7" in message and "is outside 0-4" in message
    assert "duplicate image '10_left'" in message
    assert "Testing Labels.csv: missing column(s) Retinopathy grade" in message
    assert "test.txt line 1: no image" in message and "nonexistent.jpg" in message
    assert {p: p.read_bytes() for p in before} == before
    with pytest.raises(SystemExit) as exit_:
        main(
            cli_args(
                "fit",
                "zero_shot",
                tmp_path,
                tmp_path / "runs",
                "--data.roots.eyepacs",
                str(tmp_path / "eyepacs"),
                "--data.roots.aptos2019",
                "null",
                "--data.roots.messidor2",
                "null",
            )
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "trainLabels.csv row 3" in err and "duplicate image '10_left'" in err


def test_lesion_images_carry_their_masks(public):
    records = lesion_images({"idrid": public / "idrid", "ddr": public / "ddr"})
    assert {r.source for r in records} == {"idrid", "ddr"}
    assert all(r.masks and r.grade == -1 for r in records)


def test_fit_and_test_on_all_five_sources_then_explain_real_layout_masks(synthetic, public, tmp_path):
    sources = [f"--data.roots.{name}={public / name}" for name in LAYOUTS]
    main(cli_args("fit", "fcn_clip", synthetic, tmp_path, "--trainer.max_epochs", "1", *sources))
    checkpoint = next(tmp_path.rglob("best-*.ckpt"))
    main(cli_args("test", "fcn_clip", synthetic, tmp_path, "--ckpt_path", str(checkpoint), *sources))
    run = max(tmp_path.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    document = json.loads((run / "metrics.json").read_text())
    assert set(document["per_source"]) == {"aptos2019", "messidor2", "eyepacs", "idrid", "ddr"}
    splits = list(csv.DictReader((run / "split.csv").read_text().splitlines()))
    assert {row["source"] for row in splits} >= {"eyepacs", "idrid", "ddr"}
    out = tmp_path / "explain"
    main(
        [
            *cli_args("explain", "fcn_clip", synthetic, tmp_path, *sources),
            "--ckpt_path",
            str(checkpoint),
            "--out",
            str(out),
            "--lesion_images",
        ]
    )
    rows = list(csv.DictReader((out / "FCN-CLIP" / "explain.csv").read_text().splitlines()))
    assert len(rows) == 4 + 4 and all(0 <= float(r["lesion_mass"]) <= 1 for r in rows)
