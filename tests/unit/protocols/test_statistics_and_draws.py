"""t intervals and paired tests against scipy; few-shot draws by patient; the adapters learn."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from drgrade.data.sources import Record
from drgrade.protocols.adapters import LinearProbe, TipAdapter, TipAdapterF
from drgrade.protocols.runner import few_shot_draw
from drgrade.protocols.statistics import paired_test, t_interval


def test_t_interval_and_paired_t_over_seeds_equal_scipy():
    a = np.array([0.61, 0.64, 0.58, 0.66, 0.60])
    b = np.array([0.55, 0.60, 0.57, 0.59, 0.52])
    entry = t_interval(a)
    low, high = stats.t.interval(0.95, 4, loc=a.mean(), scale=stats.sem(a))
    assert (entry["mean"], entry["low"], entry["high"]) == pytest.approx((a.mean(), low, high), rel=1e-12)
    test = paired_test(a, b)
    reference = stats.ttest_rel(a, b)
    assert test["test"] == "paired t" and test["df"] == 4
    assert (test["t"], test["p"]) == pytest.approx((reference.statistic, reference.pvalue), rel=1e-12)


def test_nadeau_bengio_widens_the_paired_test_by_the_test_train_ratio():
    a = np.array([0.7, 0.72, 0.69, 0.75, 0.71, 0.73])
    b = np.array([0.68, 0.7, 0.7, 0.71, 0.69, 0.7])
    d = a - b
    corrected = paired_test(a, b, test_train_ratio=0.5)
    t = d.mean() / np.sqrt((1 / 6 + 0.5) * d.var(ddof=1))
    assert corrected["t"] == pytest.approx(t, rel=1e-12)
    assert corrected["p"] == pytest.approx(2 * stats.t.sf(abs(t), 5), rel=1e-12)
    assert abs(corrected["t"]) < abs(paired_test(a, b)["t"])
    assert t_interval([0.5])["low"] is None and paired_test([0.5], [0.4])["p"] is None


def test_few_shot_draw_takes_whole_patients_until_each_grade_has_its_shots():
    records = [
        Record(Path(f"{p}-{eye}.png"), (p + eye) % 5, "aptos2019", f"p{p}")
        for p in range(40)
        for eye in (0, 1)
    ]
    base = ["train"] * 60 + ["val"] * 10 + ["test"] * 10
    for seed in (0, 1):
        drawn = few_shot_draw(records, base, 2, seed)
        assert drawn[60:] == base[60:]
        by_patient = defaultdict(set)
        for record, split in zip(records, drawn, strict=True):
            by_patient[record.patient_id].add(split)
        assert all(len(splits) == 1 for splits in by_patient.values())
        counts = Counter(r.grade for r, s in zip(records, drawn, strict=True) if s == "train")
        assert all(counts[g] >= 2 for g in range(5)) and sum(counts.values()) < 20
    assert few_shot_draw(records, base, 2, 0) != few_shot_draw(records, base, 2, 1)


def test_adapters_learn_separable_grades_and_choose_on_validation():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16)) * 3

    def draw(n):
        grades = np.arange(n) % 5
        return centres[grades] + rng.normal(size=(n, 16)), grades

    (train, ty), (val, vy), (test, sy) = draw(60), draw(30), draw(30)
    probe = LinearProbe().fit(train, ty, val, vy)
    assert probe.choices["C"] in LinearProbe.C_GRID
    assert (probe.logits(test).argmax(1) == sy).mean() > 0.9
    text = {"none": np.zeros((5, 16)).tolist()}
    for adapter in (TipAdapter(), TipAdapterF()):
        adapter.fit(train, ty, val, vy, text_classifiers=text, logit_scale=100.0)
        assert (adapter.logits(test).argmax(1) == sy).mean() > 0.9
        assert adapter.choices["alpha"] in TipAdapter.ALPHAS
