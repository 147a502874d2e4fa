"""``synth --layout`` writes each dataset as it is published, and each reader reads that layout.

Each test names the published facts it checks (file and folder names, sheet headers, numbering,
pairing, ungradable labels), so a reader written against a guessed layout fails here, not on a
user's real download.
"""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from drgrade.data.sources import LAYOUTS, load_sources
from drgrade.data.splits import split_identity, split_records


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("published")
    for source in LAYOUTS.values():
        source.write_synthetic(out, 30, 64, 0)
    return out


def header(path, delimiter=","):
    with path.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f, delimiter=delimiter))


def test_aptos_sheet_and_folder(published):
    root = published / "aptos2019"
    assert header(root / "train.csv") == ["id_code", "diagnosis"]  # 12-hex-digit ids, .png images
    records = load_sources({"aptos2019": root}, verify_images=False).records
    assert all(r.path.parent.name == "train_images" and r.path.suffix == ".png" for r in records)
    assert all(len(r.path.stem) == 12 and int(r.path.stem, 16) >= 0 for r in records)


def test_messidor2_two_name_forms_lower_cased_sheet_and_exam_pairs(published):
    root = published / "messidor2"
    assert header(root / "messidor_data.csv")[:4] == [
        "image_id",
        "adjudicated_dr_grade",
        "adjudicated_dme",
        "adjudicated_gradable",
    ]
    stored = {p.name for p in (root / "IMAGES").iterdir()}
    assert any(n.startswith("IM") and n.endswith(".JPG") for n in stored)  # the Extension part
    assert any(n.endswith("_PP.png") for n in stored)  # the Original part
    listed = [row[0] for row in csv.reader((root / "messidor_data.csv").open())][1:]
    assert any(n.endswith(".jpg") and n[:-4] + ".JPG" in stored for n in listed)  # .jpg in the sheet
    assert header(root / "messidor-2.csv", ";") == ["left", "right"]
    found = load_sources({"messidor2": root}, verify_images=False)
    assert found.excluded and all("ungradable" in e.reason for e in found.excluded)
    eyes = Counter(r.patient_id for r in found.records)
    assert max(eyes.values()) == 2  # an exam's two eyes share a patient


def test_eyepacs_eye_names_sheets_and_disjoint_patient_numbers(published):
    root = published / "eyepacs"
    assert header(root / "trainLabels.csv") == ["image", "level"]
    assert header(root / "retinopathy_solution.csv") == ["image", "level", "Usage"]
    usage = {row["Usage"] for row in csv.DictReader((root / "retinopathy_solution.csv").open())}
    assert usage == {"Public", "Private"}
    records = load_sources({"eyepacs": root}, verify_images=False).records
    assert {r.path.suffix for r in records} == {".jpeg"}
    assert {r.path.stem.rsplit("_", 1)[1] for r in records} == {"left", "right"}
    parts: dict[str, set] = {}
    for r in records:
        parts.setdefault(r.official_split, set()).add(r.patient_id)
    assert set(parts) == {"train", "test"} and not parts["train"] & parts["test"]


def test_idrid_parts_restart_at_idrid_001_and_stay_two_images(published):
    root = published / "idrid"
    grading = root / "B. Disease Grading"
    train = grading / "1. Original Images" / "a. Training Set" / "IDRiD_001.jpg"
    test = grading / "1. Original Images" / "b. Testing Set" / "IDRiD_001.jpg"
    assert train.is_file() and test.is_file()  # the real download numbers each part from 001
    sheet = grading / "2. Groundtruths" / "b. IDRiD_Disease Grading_Testing Labels.csv"
    assert header(sheet)[:3] == ["Image name", "Retinopathy grade", "Risk of macular edema "]
    records = load_sources({"idrid": root}, verify_images=False).records
    by_path = {r.path: r for r in records}
    assert by_path[train].patient_id != by_path[test].patient_id
    assert (by_path[train].official_split, by_path[test].official_split) == ("train", "test")
    identity = split_identity(records, split_records(records, official=True), (0.7, 0.15, 0.15), 42)
    assert identity["images"] == len(records) == 30


def test_ddr_three_folders_three_lists_and_grade_5(published):
    grading = published / "ddr" / "DR_grading"
    for part in ("train", "valid", "test"):
        assert (grading / part).is_dir() and (grading / f"{part}.txt").is_file()
        for line in (grading / f"{part}.txt").read_text().splitlines():
            name, grade = line.split()
            assert name.endswith(".jpg") and grade in "012345"
    found = load_sources({"ddr": published / "ddr"}, verify_images=False)
    assert Counter(r.official_split for r in found.records).keys() == {"train", "val", "test"}
    assert found.excluded and all("grade 5" in e.reason for e in found.excluded)


def test_deepdrid_four_photographs_per_patient_grade_in_its_eyes_column(published):
    from drgrade.data.sources.deepdrid import read, sheet

    root = published / "deepdrid"
    training = sheet(root, "regular-fundus-training")
    assert header(training) == [
        "patient_id",
        "image_id",
        "image_path",
        "Overall quality",
        "left_eye_DR_Level",
        "right_eye_DR_Level",
        "patient_DR_Level",
        "Clarity",
        "Field definition",
        "Artifact",
    ]
    rows = list(csv.DictReader(training.open(newline="")))
    assert rows[0]["image_path"].startswith("\\regular_fundus_images\\regular-fundus-training\\Images\\")
    assert rows[0]["right_eye_DR_Level"] == "" and rows[2]["left_eye_DR_Level"] == ""  # l1 l2 r1 r2
    found = read(root)
    photographs = found.records + [e.record for e in found.excluded]
    assert len(photographs) == 4 * 7  # 30 // 4 patients, two fields of each eye
    by_patient = Counter((r.patient_id, r.eye, r.field) for r in photographs)
    assert set(by_patient.values()) == {1} and {(r.eye, r.field) for r in photographs} == {
        ("left", "1"),
        ("left", "2"),
        ("right", "1"),
        ("right", "2"),
    }
    listed = {row["image_id"]: row for row in rows}
    for record in found.records:
        row = listed.get(record.path.stem)
        if row is not None:  # the grade is the one in its own eye's column
            assert record.grade == int(row[f"{record.eye}_eye_DR_Level"])
    assert {r.official_split for r in found.records} == {"train", "val"}
    assert all("poor quality by the graders (Clarity" in e.reason for e in found.excluded)


def test_deepdrid_bad_rows_are_named(published, tmp_path):
    import shutil

    from drgrade.data.sources.deepdrid import read, sheet
    from drgrade.errors import DataValidationError

    root = tmp_path / "deepdrid"
    shutil.copytree(published / "deepdrid", root)
    path = sheet(root, "regular-fundus-validation")
    lines = path.read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join([first[0], "oops", *first[2:]])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError) as error:
        read(root)
    assert f"{path} row 2: image_id 'oops' is not <patient>_<l|r><1|2>" in str(error.value)
