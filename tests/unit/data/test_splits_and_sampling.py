from collections import Counter

import numpy as np
import pytest
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from drgrade.data.sampling import ClassTargetSampler, InverseFrequencySampler
from drgrade.data.sources import Record, load_sources
from drgrade.data.splits import split_records
from drgrade.errors import OptionError


@pytest.fixture(scope="module")
def records(synthetic):
    roots = {"aptos2019": synthetic / "aptos2019", "messidor2": synthetic / "messidor2"}
    return load_sources(roots, verify_images=False).records


def test_split_proportions_stratified_grouped_deterministic(records):
    splits = split_records(records, seed=3)
    counts = Counter(splits)
    assert abs(counts["train"] / len(records) - 0.70) < 0.03
    assert abs(counts["val"] / len(records) - 0.15) < 0.03
    for grade in range(5):
        in_grade = [s for r, s in zip(records, splits, strict=True) if r.grade == grade]
        assert Counter(in_grade)["train"] / len(in_grade) == pytest.approx(0.7, abs=0.2)
    patients = {}
    for r, s in zip(records, splits, strict=True):
        patients.setdefault(r.patient_id, set()).add(s)
    assert all(len(s) == 1 for s in patients.values())
    assert split_records(records, seed=3) == splits
    assert split_records(records, seed=4) != splits


def test_external_validation_holds_out_a_whole_source(records):
    splits = split_records(records, seed=3, test_sources=["messidor2"])
    by_source = Counter((r.source, s) for r, s in zip(records, splits, strict=True))
    messidor = sum(1 for r in records if r.source == "messidor2")
    assert by_source[("messidor2", "test")] == messidor and by_source[("aptos2019", "test")] == 0
    aptos = len(records) - messidor
    assert by_source[("aptos2019", "val")] / aptos == pytest.approx(0.15 / 0.85, abs=0.03)
    with pytest.raises(OptionError, match=r"no images from \['eyepacs'\]"):
        split_records(records, test_sources=["eyepacs"])
    with pytest.raises(OptionError, match="nothing is left to train on"):
        split_records(records, test_sources=["messidor2", "aptos2019"])


def test_exam_pairs_stay_together_even_with_different_grades():
    records = [Record(f"p{i}.png", i % 5, "x", f"exam{i // 2}") for i in range(200)]
    splits = split_records(records, seed=0)
    assert all(splits[i] == splits[i + 1] for i in range(0, 200, 2))


def test_class_target_sampler_counts_and_epochs():
    labels = [0] * 500 + [1] * 50 + [2] * 300 + [3] * 20 + [4] * 30
    sampler = ClassTargetSampler(labels, (445, 200, 200, 180, 180), seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 1205
    assert Counter(labels[i] for i in first) == {0: 445, 1: 200, 2: 200, 3: 180, 4: 180}
    assert len(set(i for i in first if labels[i] == 0)) == 445  # undersampled without replacement
    assert set(i for i in first if labels[i] == 3) == set(range(850, 870))  # every rare image kept
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_inverse_frequency_sampler_balances():
    labels = [0] * 900 + [1] * 100
    drawn = Counter(labels[i] for i in InverseFrequencySampler(labels, seed=0))
    assert 400 < drawn[1] < 600


@pytest.mark.parametrize(
    "make",
    [
        lambda labels: ClassTargetSampler(labels, (40, 30, 30, 20, 20), seed=5),
        lambda labels: InverseFrequencySampler(labels, seed=5),
    ],
)
def test_ddp_shards_are_disjoint_and_cover_the_epoch(make):
    labels = list(np.random.default_rng(0).integers(0, 5, 300))
    shards = []
    for rank in range(2):
        wrapper = DistributedSamplerWrapper(make(labels), num_replicas=2, rank=rank, shuffle=False)
        wrapper.set_epoch(3)
        shards.append(list(wrapper))
    full = make(labels)
    full.set_epoch(3)
    drawn = list(full)
    # the one epoch list, dealt out: rank r takes positions r, r+2, ...; together, all of it
    assert shards[0] == drawn[0::2] and shards[1] == drawn[1::2]
    assert Counter(shards[0] + shards[1]) == Counter(drawn)


def test_sampler_rejects_bad_targets():
    with pytest.raises(ValueError, match="target_counts"):
        ClassTargetSampler([0, 1], (1, 2, 3))
