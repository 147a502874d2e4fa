import shutil

import cv2
import numpy as np
import pytest

from drgrade.data.images import read_rgb
from drgrade.data.sources import load_sources
from drgrade.data.sources.aptos import read as read_aptos
from drgrade.data.sources.csv import read as read_csv_source
from drgrade.data.sources.messidor2 import read as read_messidor
from drgrade.errors import DataValidationError


def copy(synthetic, tmp_path, name):
    return shutil.copytree(synthetic / name, tmp_path / name)


def test_aptos_reader_reads_every_row(synthetic):
    records = read_aptos(synthetic / "aptos2019").records
    rows = (synthetic / "aptos2019" / "train.csv").read_text().strip().splitlines()[1:]
    assert len(records) == len(rows) == 180
    assert {r.source for r in records} == {"aptos2019"}
    assert len({r.patient_id for r in records}) == 180  # each APTOS image is its own group
    assert all(r.path.is_file() and 0 <= r.grade <= 4 for r in records)


def test_messidor_reader_excludes_ungradable_matches_case_and_pairs_exams(synthetic):
    root = synthetic / "messidor2"
    sheet = (root / "messidor_data.csv").read_text().splitlines()[1:]
    ungradable = [line.split(",")[0] for line in sheet if line.endswith(",0")]
    assert ungradable and any(".jpg," in line for line in sheet)
    found = read_messidor(root)
    records = found.records
    assert len(records) == 90 - len(ungradable)
    assert sorted(e.record.path.name.lower() for e in found.excluded) == sorted(n.lower() for n in ungradable)
    assert all(e.kind == "dataset" and "ungradable" in e.reason for e in found.excluded)
    assert any(r.path.suffix == ".JPG" for r in records)  # listed as .jpg, stored as .JPG
    by_patient = {}
    for r in records:
        by_patient.setdefault(r.patient_id, []).append(r.path.name)
    assert max(len(v) for v in by_patient.values()) == 2  # both eyes of an exam share a patient


def test_every_problem_is_reported_with_file_and_row(synthetic, tmp_path):
    root = copy(synthetic, tmp_path, "aptos2019")
    lines = (root / "train.csv").read_text().splitlines()
    first_id = lines[1].split(",")[0]
    lines[2] = lines[2].split(",")[0] + ",7"  # row 3: grade out of range
    lines[3] = lines[3].split(",")[0] + ",two"  # row 4: not a number
    lines.append("missing_image_id,1")  # no image
    lines.append(f"{first_id},0")  # duplicate id
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    corrupt_id = lines[5].split(",")[0]
    (root / "train_images" / f"{corrupt_id}.png").write_bytes(b"not a png at all")
    with pytest.raises(DataValidationError) as error:
        read_aptos(root)
    message = str(error.value)
    assert "row 3: grade '7' is outside 0-4" in message
    assert "row 4: grade 'two' is not a number" in message
    assert "missing_image_id" in message and "no image" in message
    assert f"duplicate id_code '{first_id}'" in message
    assert f"{corrupt_id}.png: image does not decode" in message
    assert len(error.value.problems) == 5
    assert (root / "train.csv").read_text().count("\n") == len(lines)  # nothing was changed


def test_wrong_columns_and_missing_roots_are_named(synthetic, tmp_path):
    root = copy(synthetic, tmp_path, "messidor2")
    text = (root / "messidor_data.csv").read_text().replace("adjudicated_dr_grade", "grade")
    (root / "messidor_data.csv").write_text(text)
    with pytest.raises(DataValidationError) as error:
        load_sources({"aptos2019": tmp_path / "nowhere", "messidor2": root})
    message = str(error.value)
    assert "nowhere: APTOS 2019 root folder not found" in message
    assert "messidor_data.csv: missing column(s) adjudicated_dr_grade" in message


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_odd_image_formats_are_converted(tmp_path, kind):
    base = (np.arange(64 * 48 * 3) % 251).reshape(48, 64, 3).astype(np.uint8)
    image = {
        "gray": base[..., 0],
        "rgba": np.dstack([base, np.full(base.shape[:2], 255, np.uint8)]),
        "16bit": base.astype(np.uint16) * 257,
    }[kind]
    path = tmp_path / f"{kind}.png"
    cv2.imwrite(str(path), image)
    rgb = read_rgb(path)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    if kind == "16bit":
        assert np.array_equal(rgb[..., ::-1], base)


def test_generic_csv_source(synthetic, tmp_path):
    images = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:4]
    for image in images:
        shutil.copy(image, tmp_path / image.name)
    rows = [f"{p.name},{i % 5},pat{i // 2}" for i, p in enumerate(images)]
    (tmp_path / "clinic.csv").write_text("path,grade,patient_id\n" + "\n".join(rows) + "\n")
    records = read_csv_source(tmp_path / "clinic.csv").records
    assert [r.grade for r in records] == [0, 1, 2, 3]
    assert records[0].patient_id == records[1].patient_id == "clinic:pat0"
    assert records[0].source == "clinic"
