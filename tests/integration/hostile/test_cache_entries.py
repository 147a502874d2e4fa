"""The intake cache serves a file only its own entry, and a pipe in an entry's place never hangs."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from drgrade.data.intake import IntakeCache, take_in


@pytest.fixture
def two_photographs(synthetic, tmp_path):
    names = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:2]
    copies = []
    for i, path in enumerate(names):
        copies.append(tmp_path / f"photo_{i}.png")
        shutil.copy(path, copies[-1])
    return copies


def test_another_photographs_genuine_entry_in_its_place_is_not_served(two_photographs, tmp_path):
    first, second = two_photographs
    cache = IntakeCache(tmp_path / "cache", 48)
    cache.get(first)
    cache.get(second)
    # the first photograph's entry swapped for the second's (both written by drgrade, checksums valid)
    shutil.copy(cache.entry(cache.identity(second)), cache.entry(cache.identity(first)))
    assert cache.stored_facts(first) is None  # what a setup reads: not the second photograph's facts
    crop, facts = cache.get(first)
    assert np.array_equal(crop, take_in(first, 48)[0]) and facts == take_in(first, 48)[1]
    assert cache.stored_facts(first) == facts


def test_a_fifo_in_an_entrys_place_is_passed_over_without_blocking(two_photographs, tmp_path):
    first = two_photographs[0]
    cache = IntakeCache(tmp_path / "cache", 48)
    entry = cache.entry(cache.identity(first))
    entry.parent.mkdir(parents=True)
    os.mkfifo(entry)  # nobody writes to it: a blocking open would wait for ever
    assert cache.stored_facts(first) is None
    crop, facts = cache.get(first)  # taken in again (the pipe is replaced by a real entry)
    assert np.array_equal(crop, take_in(first, 48)[0]) and not facts.error
