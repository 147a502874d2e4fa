"""The intake cache: one decode per photograph, stored, checked, never served stale or damaged."""

import os
import shutil
import time

import numpy as np
import pytest

from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import FundusDataset
from drgrade.data.images import write_rgb
from drgrade.data.intake import IntakeCache, judge, take_in
from drgrade.data.quality import QualityLimits
from drgrade.data.sources.aptos import read as read_aptos
from drgrade.data.synthetic import render_fundus


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "img.png"
    write_rgb(path, render_fundus(3, 160, np.random.default_rng(0))[0])
    return path


def entries(cache):
    return sorted(cache.root.rglob("*.npz"))


def test_cache_returns_what_the_intake_returns(synthetic, tmp_path):
    records = read_aptos(synthetic / "aptos2019", verify_images=False).records[:5]
    plain = FundusDataset(records, 64, EvalTransform())
    cached = FundusDataset(records, 64, EvalTransform(), intake=IntakeCache(tmp_path / "c", 64))
    for i in range(5):
        first, second = cached[i]["image"], cached[i]["image"]  # built, then read back
        assert np.array_equal(plain[i]["image"].numpy(), first.numpy())
        assert np.array_equal(first.numpy(), second.numpy())
    assert len(entries(cached.intake)) == 5


def test_touched_source_and_changed_setting_are_taken_in_again(source, tmp_path):
    cache = IntakeCache(tmp_path / "c", 48)
    first, facts = cache.get(source)
    assert len(entries(cache)) == 1 and facts.digest and facts.measured is not None
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    cache.get(source)
    assert len(entries(cache)) == 2
    write_rgb(source, render_fundus(0, 160, np.random.default_rng(1))[0])  # new content
    assert not np.array_equal(cache.get(source)[0], first)
    other = IntakeCache(tmp_path / "c", 32)  # another setting: another entry
    assert other.get(source)[0].shape == (32, 32, 3)
    assert len(entries(cache)) == 4


def test_a_source_rewritten_with_its_old_modification_time_is_not_served_stale(source, tmp_path):
    cache = IntakeCache(tmp_path / "c", 48)
    first = cache.get(source)[0]
    stat = source.stat()
    replacement = render_fundus(0, 160, np.random.default_rng(5))[0]
    write_rgb(tmp_path / "same_size.png", replacement)
    source.write_bytes((tmp_path / "same_size.png").read_bytes())
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the modification time put back
    assert source.stat().st_mtime_ns == stat.st_mtime_ns
    again = cache.get(source)[0]
    assert not np.array_equal(again, first) and np.array_equal(again, take_in(source, 48)[0])


def test_torn_or_damaged_entries_are_recomputed_not_served(source, tmp_path):
    cache = IntakeCache(tmp_path / "c", 48)
    good = cache.get(source)[0]
    entry = cache.entry(cache.identity(source))
    entry.write_bytes(entry.read_bytes()[:100])  # a torn write
    assert np.array_equal(cache.get(source)[0], good)
    with np.load(entry) as stored:  # and the entry was rewritten whole
        assert np.array_equal(stored["image"], good)
    damaged = bytearray(entry.read_bytes())
    at = bytes(damaged).index(good.tobytes()[:64])  # the stored pixels: flip one bit in them
    damaged[at + 10] ^= 0x01
    entry.write_bytes(bytes(damaged))
    assert np.array_equal(cache.get(source)[0], good)  # the checksum caught it
    assert not list(cache.root.rglob("*.tmp"))


def test_a_full_disk_turns_the_cache_off_and_loses_nothing(source, tmp_path, monkeypatch):
    import drgrade.data.intake as intake

    cache = IntakeCache(tmp_path / "c", 48)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake.tempfile, "mkstemp", no_space)
    with pytest.warns(UserWarning, match="No space left on device"):
        image = cache.get(source)[0]
    assert image.shape == (48, 48, 3) and cache.root is None  # computed, and the cache is off
    assert np.array_equal(cache.get(source)[0], image)


def test_changed_quality_limits_re_judge_stored_measurements_without_decoding(source, tmp_path, monkeypatch):
    import drgrade.data.images as images

    cache = IntakeCache(tmp_path / "c", 48)
    facts = cache.get(source)[1]
    assert judge(facts) == ""
    monkeypatch.setattr(images, "decode", lambda *a, **k: pytest.fail("decoded again"))
    stored = cache.get(source)[1]
    assert stored == facts
    assert "out of focus" in judge(stored, QualityLimits(min_focus=1e9))


def test_cache_command_takes_in_every_image(synthetic, tmp_path, capsys):
    from drgrade.cli import main
    from tests.conftest import cli_args

    shutil.rmtree(tmp_path / "c", ignore_errors=True)
    main(
        [
            *cli_args("cache", "fcn_clip", synthetic, tmp_path / "runs"),
            "--workers",
            "2",
            "--data.cache_dir",
            str(tmp_path / "c"),
        ]
    )
    count = int(capsys.readouterr().out.split(" images taken in")[0].split()[-1])
    assert count == len(list((tmp_path / "c").rglob("*.npz"))) > 250
