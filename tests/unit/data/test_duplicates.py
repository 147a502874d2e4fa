"""Exact and near-duplicate photographs land in one split; disagreeing grades are reported."""

import csv
import shutil

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from drgrade.data import DRDataModule
from drgrade.data.duplicates import difference_hash, duplicate_groups
from drgrade.data.images import read_rgb, write_rgb
from drgrade.data.sources import load_sources
from drgrade.data.splits import source_table

RETINA = skdata.retina()


def test_near_copies_hash_close_and_distinct_images_far(synthetic):
    base = difference_hash(RETINA)
    resized = difference_hash(cv2.resize(RETINA, (600, 600), interpolation=cv2.INTER_AREA))
    _, encoded = cv2.imencode(".jpg", RETINA, [cv2.IMWRITE_JPEG_QUALITY, 50])
    recompressed = difference_hash(cv2.imdecode(encoded, cv2.IMREAD_COLOR))
    assert (base != resized).sum() <= 8 and (base != recompressed).sum() <= 8
    others = [
        difference_hash(read_rgb(p)) for p in sorted((synthetic / "aptos2019" / "train_images").iterdir())
    ]
    assert duplicate_groups([str(i) for i in range(len(others))], others) == []  # 180 distinct images


def test_a_photograph_copied_under_20_ids_stays_in_one_split(synthetic, tmp_path):
    images = sorted((synthetic / "aptos2019" / "train_images").iterdir())
    rows = [(p.name, g) for p, g in zip(images[:120], [0, 1, 2, 3, 4] * 24, strict=True)]
    for path, _ in rows:
        shutil.copy(images[rows.index((path, _))], tmp_path / path)
    write_rgb(tmp_path / "photo.png", RETINA)
    for i in range(20):  # the same photograph under 20 ids, exact and re-encoded copies, grades 0-4
        if i % 2:
            shutil.copy(tmp_path / "photo.png", tmp_path / f"copy{i}.png")
        else:
            write_rgb(tmp_path / f"copy{i}.jpg", cv2.resize(RETINA, (700 + i, 700 + i)))
        rows.append((f"copy{i}.png" if i % 2 else f"copy{i}.jpg", i % 5))
    with (tmp_path / "sheet.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "grade"), *rows])
    datamodule = DRDataModule(csv_sources=[str(tmp_path / "sheet.csv")], image_size=64, cache=False)
    with pytest.warns(UserWarning, match="1 with disagreeing grades"):
        datamodule.setup("fit")
    splits = {r.path.name: s for r, s in zip(datamodule.records, datamodule.splits, strict=True)}
    assert len({splits[name] for name, _ in rows[120:]}) == 1
    assert len(datamodule.duplicate_groups) == 1 and len(datamodule.duplicate_groups[0]) == 20
    assert len({r.grade for r in datamodule.duplicate_groups[0]}) == 5  # reported as disagreeing


def test_grouping_is_linear_and_exact():
    rng = np.random.default_rng(0)
    hashes = list(rng.random((2000, 256)) > 0.5)
    hashes[10] = hashes[3].copy()
    hashes[10][:8] = ~hashes[10][:8]  # 8 bits apart: a near copy
    hashes[20] = hashes[4].copy()
    hashes[20][:9] = ~hashes[20][:9]  # 9 bits: not a copy
    digests = [str(i) for i in range(2000)]
    digests[30] = digests[31]  # byte-identical files
    assert sorted(map(sorted, duplicate_groups(digests, hashes))) == [[3, 10], [30, 31]]


def test_a_held_out_photograph_copied_into_a_training_source_is_left_out(synthetic, tmp_path):
    shutil.copytree(synthetic / "aptos2019", tmp_path / "aptos2019")
    original = load_sources({"messidor2": synthetic / "messidor2"}, verify_images=False).records[0]
    messidor = original.path
    shutil.copy(messidor, tmp_path / "aptos2019" / "train_images" / "c0ffee000001.png")
    with (tmp_path / "aptos2019" / "train.csv").open("a", newline="") as f:
        csv.writer(f).writerow(["c0ffee000001", original.grade])
    datamodule = DRDataModule(
        roots={"aptos2019": str(tmp_path / "aptos2019"), "messidor2": str(synthetic / "messidor2")},
        test_sources=["messidor2"],
        image_size=64,
        cache=False,
    )
    with pytest.warns(UserWarning) as caught:
        datamodule.setup("fit")
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("duplicates: 1 group") for m in messages)
    assert any(m.startswith("held-out leaks: 1 image") for m in messages)
    placed = {r.path.name: s for r, s in zip(datamodule.records, datamodule.splits, strict=True)}
    assert placed[messidor.name] == "test" and "c0ffee000001.png" not in placed
    left_out = [e for e in datamodule.excluded if e.kind == "duplicate"]
    assert [e.record.path.name for e in left_out] == ["c0ffee000001.png"]
    assert messidor.name in left_out[0].reason and "test split" in left_out[0].reason
    table = source_table(datamodule.records, datamodule.splits, datamodule.excluded)
    assert "1 same photograph or patient as a held-out image" in table


def test_a_patient_across_published_parts_keeps_only_the_held_out_part():
    from drgrade.data.sources import Record
    from drgrade.data.splits import held_out_leaks

    records = [Record(f"{n}.png", 0, "ddr", p) for n, p in (("a", "x"), ("b", "x"), ("c", "y"), ("d", "z"))]
    leaks = held_out_leaks(records, ["train", "test", "val", "train"])
    assert list(leaks) == [0] and "b.png" in leaks[0] and "left out of train" in leaks[0]
    assert held_out_leaks(records, ["train", "train", "val", "test"]) == {}
