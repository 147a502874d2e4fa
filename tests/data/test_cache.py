import os
import time

import numpy as np
import pytest

from drgrade.data.augment import EvalTransform
from drgrade.data.cache import PreprocessCache
from drgrade.data.dataset import FundusDataset
from drgrade.data.images import write_rgb
from drgrade.data.sources.aptos import read as read_aptos
from drgrade.data.synthetic import render_fundus


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "img.png"
    write_rgb(path, render_fundus(3, 160, np.random.default_rng(0))[0])
    return path


def entries(cache):
    return sorted(cache.root.rglob("*.npy"))


def test_cache_returns_what_preprocessing_returns(synthetic, tmp_path):
    records = read_aptos(synthetic / "aptos2019", verify_images=False).records[:5]
    plain = FundusDataset(records, 64, EvalTransform())
    cached = FundusDataset(records, 64, EvalTransform(), cache=PreprocessCache(tmp_path / "c", 64))
    for i in range(5):
        first, second = cached[i]["image"], cached[i]["image"]  # built, then read back
        assert np.array_equal(plain[i]["image"].numpy(), first.numpy())
        assert np.array_equal(first.numpy(), second.numpy())
    assert len(entries(cached.cache)) == 5


def test_touched_source_and_changed_setting_are_recached(source, tmp_path):
    cache = PreprocessCache(tmp_path / "c", 48)
    first = cache.load(source)
    assert len(entries(cache)) == 1
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    cache.load(source)
    assert len(entries(cache)) == 2
    write_rgb(source, render_fundus(0, 160, np.random.default_rng(1))[0])  # new content
    assert not np.array_equal(cache.load(source), first)
    other = PreprocessCache(tmp_path / "c", 32)  # another setting: another entry
    assert other.load(source).shape == (32, 32, 3)
    assert len(entries(cache)) == 4


def test_torn_entry_is_ignored_and_rebuilt(source, tmp_path):
    cache = PreprocessCache(tmp_path / "c", 48)
    good = cache.load(source)
    entry = cache.entry(source)
    entry.write_bytes(entry.read_bytes()[:100])  # a torn write
    assert np.array_equal(cache.load(source), good)
    assert np.array_equal(np.load(entry), good)  # and the entry was rewritten whole
    assert not list(cache.root.rglob("*.tmp"))


def test_cache_command_builds_every_entry(synthetic, tmp_path, capsys):
    from drgrade.cli import main
    from tests.conftest import cli_args

    main(
        [
            *cli_args("cache", "fcn_clip", synthetic, tmp_path / "runs"),
            "--workers",
            "2",
            "--data.cache_dir",
            str(tmp_path / "c"),
        ]
    )
    count = int(capsys.readouterr().out.split(" images cached")[0].split()[-1])
    assert count == len(list((tmp_path / "c").rglob("*.npy"))) > 250
