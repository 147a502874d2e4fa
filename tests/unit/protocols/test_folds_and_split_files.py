"""k folds (grouped, stratified, test rotated or fixed) and split files read back by the data."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from drgrade.data import DRDataModule
from drgrade.data.folds import fold_splits
from drgrade.data.split_file import write_split_file
from drgrade.data.splits import image_key
from drgrade.errors import DataValidationError


def data(synthetic, **options) -> DRDataModule:
    return DRDataModule(
        roots={"aptos2019": str(synthetic / "aptos2019"), "messidor2": str(synthetic / "messidor2")},
        image_size=64,
        num_workers=0,
        **options,
    )


@pytest.fixture(scope="module")
def loaded(synthetic):
    datamodule = data(synthetic)
    datamodule.load_records()
    return datamodule


def test_rotated_folds_test_every_image_once_and_keep_patients_together(loaded):
    records = loaded.records
    folds = fold_splits(records, 3, seed=1)
    assert len(folds) == 3
    tested = Counter(i for splits in folds for i, s in enumerate(splits) if s == "test")
    assert sorted(tested) == list(range(len(records))) and set(tested.values()) == {1}
    for splits in folds:
        by_patient = {}
        for record, split in zip(records, splits, strict=True):
            assert by_patient.setdefault(record.patient_id, split) == split
        # grade-stratified: every grade present overall is in each fold's test split
        assert {r.grade for r, s in zip(records, splits, strict=True) if s == "test"} == {
            r.grade for r in records
        }
        assert {"train", "val", "test"} == set(splits)
    assert fold_splits(records, 3, seed=1) == folds
    assert fold_splits(records, 3, seed=2) != folds


def test_fixed_test_is_the_same_for_every_seed_and_fold(loaded):
    records = loaded.records
    first = fold_splits(records, 2, seed=0, test="fixed")
    second = fold_splits(records, 2, seed=5, test="fixed")
    tests = {tuple(s == "test" for s in splits) for splits in first + second}
    assert len(tests) == 1
    vals = [{i for i, s in enumerate(splits) if s == "val"} for splits in first]
    assert not vals[0] & vals[1]  # each development image validates in one fold


def test_split_file_is_read_back_with_unused_images_left_out(loaded, synthetic, tmp_path):
    records = loaded.records
    splits = fold_splits(records, 3, seed=0)[1]
    splits[0] = "unused"
    path = write_split_file(tmp_path / "splits" / "fold1.csv", records, splits)
    again = data(synthetic, split_file=str(path))
    again.load_records()
    given = {image_key(r): s for r, s in zip(records, splits, strict=True)}
    assert {image_key(r): s for r, s in zip(again.records, again.splits, strict=True)} == {
        k: s for k, s in given.items() if s != "unused"
    }
    assert [e.record.path for e in again.excluded if e.kind == "split_file"] == [records[0].path]
    assert again.split_identity["split"] == "file:fold1.csv"


def test_split_file_problems_name_the_row_and_the_image(loaded, synthetic, tmp_path):
    path = write_split_file(tmp_path / "s.csv", loaded.records, loaded.splits)
    rows = list(csv.reader(path.open()))
    rows[3][2] = "holdout"
    missing = rows.pop(5)[0]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    datamodule = data(synthetic, split_file=str(path))
    with pytest.raises(DataValidationError) as error:
        datamodule.load_records()
    assert "row 4: split 'holdout'" in str(error.value)
    assert f"no row for {missing}" in str(error.value)
