"""reproduce --protocol: seeds x folds, leave one source out and few-shot from protocol files."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from drgrade.cli import main
from drgrade.data.sources import write_layouts
from drgrade.errors import OptionError
from drgrade.protocols.adapters import ADAPTERS
from drgrade.protocols.spec import ADAPTATION_MODELS, load_protocol, shipped_protocols
from tests.conftest import ROOT, TINY


def reproduce(protocol: dict, data: Path, out: Path, tmp_path: Path) -> Path:
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(protocol))
    main(
        [
            "reproduce",
            "--protocol",
            str(path),
            "--data",
            str(data),
            "--configs",
            str(ROOT / "configs"),
            "--config",
            str(TINY),
            "--trainer.default_root_dir",
            str(tmp_path / "unused-root"),
            "--out",
            str(out),
        ]
    )
    return out


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folds_report(synthetic, tmp_path_factory):
    """A 2-seed x 2-fold protocol of the linear probe against Tip-Adapter (embeddings: fast)."""
    tmp = tmp_path_factory.mktemp("folds")
    protocol = {
        "design": "folds",
        "models": ["linear_probe", "tip_adapter"],
        "seeds": [0, 1],
        "folds": 2,
        "metrics": ["qwk", "auroc_macro"],
        "bootstrap_resamples": 20,
    }
    return reproduce(protocol, synthetic, tmp / "report", tmp)


def test_folds_mean_and_interval_equal_a_recomputation_from_the_per_run_csv(folds_report):
    runs = read_csv(folds_report / "runs.csv")
    assert Counter(r["model"] for r in runs) == {"linear_probe": 4, "tip_adapter": 4}
    assert {r["run"] for r in runs} == {"seed0-fold0", "seed0-fold1", "seed1-fold0", "seed1-fold1"}
    # each run keeps its own bootstrap interval around its value
    for r in runs:
        assert float(r["qwk_low"]) <= float(r["qwk"]) <= float(r["qwk_high"])
    summary = {(s["model"], s["metric"]): s for s in read_csv(folds_report / "summary.csv")}
    for model in ("linear_probe", "tip_adapter"):
        for metric in ("qwk", "auroc_macro"):
            x = np.array([float(r[metric]) for r in runs if r["model"] == model])
            s = summary[(model, metric)]
            assert int(s["n"]) == 4 and float(s["mean"]) == pytest.approx(x.mean(), abs=1e-12)
            if x.std() > 0:
                low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
                assert (float(s["low"]), float(s["high"])) == pytest.approx((low, high), abs=1e-9)


def test_folds_paired_test_is_scipy_s_with_the_nadeau_bengio_correction(folds_report):
    runs = read_csv(folds_report / "runs.csv")
    by = {(r["model"], r["run"]): r for r in runs}
    order = sorted({r["run"] for r in runs})
    a = np.array([float(by["linear_probe", run]["auroc_macro"]) for run in order])
    b = np.array([float(by["tip_adapter", run]["auroc_macro"]) for run in order])
    ratio = np.mean(
        [
            int(by["linear_probe", r]["n_test"])
            / (int(by["linear_probe", r]["n_train"]) + int(by["linear_probe", r]["n_val"]))
            for r in order
        ]
    )
    plain = stats.ttest_rel(a, b)
    n = len(a)
    corrected_t = plain.statistic * np.sqrt((1 / n) / (1 / n + ratio))
    row = next(c for c in read_csv(folds_report / "comparisons.csv") if c["metric"] == "auroc_macro")
    assert row["test"].startswith("corrected resampled t")
    assert float(row["t"]) == pytest.approx(corrected_t, rel=1e-9)
    assert float(row["p"]) == pytest.approx(2 * stats.t.sf(abs(corrected_t), n - 1), rel=1e-9)
    assert float(row["mean_difference"]) == pytest.approx((a - b).mean(), abs=1e-12)


def test_folds_write_split_files_and_the_report(folds_report):
    runs = {r["run"]: r for r in read_csv(folds_report / "runs.csv") if r["model"] == "linear_probe"}
    for name, row in runs.items():
        splits = Counter(r["split"] for r in read_csv(folds_report / "splits" / f"{name}.csv"))
        assert splits["test"] == int(row["n_test"]) and splits["train"] == int(row["n_train"])
    metrics = json.loads(
        (folds_report / "runs" / "linear_probe" / "seed0-fold0" / "metrics.json").read_text()
    )
    assert metrics["model_name"] == "Linear probe" and "C" in metrics["adaptation"]
    assert (folds_report / "runs" / "tip_adapter" / "seed1-fold1" / "predictions.csv").is_file()
    text = (folds_report / "report.md").read_text()
    assert "linear_probe - tip_adapter" in text and (folds_report / "seed_spread_qwk.png").is_file()


def test_leave_one_source_out_over_the_five_synthetic_layouts(tmp_path):
    layouts = ["aptos", "messidor2", "eyepacs", "idrid", "ddr"]
    write_layouts(tmp_path / "data", dict.fromkeys(layouts, 16), 128, 0)
    protocol = {
        "design": "leave_one_source_out",
        "models": ["linear_probe"],
        "seeds": [0],
        "bootstrap_resamples": 0,
    }
    out = reproduce(protocol, tmp_path / "data", tmp_path / "report", tmp_path)
    runs = read_csv(out / "runs.csv")
    held = {r["held_out"] for r in runs}
    assert held == {"", "aptos2019", "messidor2", "eyepacs", "idrid", "ddr"}
    for r in runs:
        if r["held_out"]:  # the held-out source is the whole test split, absent from training
            split = read_csv(out / "splits" / f"{r['run']}.csv")
            assert {s["source"] for s in split if s["split"] == "test"} == {r["held_out"]}
            assert r["held_out"] not in {s["source"] for s in split if s["split"] in ("train", "val")}
    text = (out / "report.md").read_text()
    assert "## External validation" in text and "ddr (held out)" in text and "in-source (all sources)" in text
    assert (out / "loso_heat_map_qwk.png").is_file()


def test_few_shot_budgets_draw_whole_patients_and_write_the_curve(synthetic, tmp_path):
    protocol = {
        "design": "few_shot",
        "models": ["linear_probe", "tip_adapter"],
        "shots": [1, 4],
        "seeds": [0, 1],
        "metrics": ["qwk", "auroc_macro"],
        "bootstrap_resamples": 0,
    }
    out = reproduce(protocol, synthetic, tmp_path / "report", tmp_path)
    runs = read_csv(out / "runs.csv")
    assert {r["shots"] for r in runs} == {"1", "4"}
    tests = set()
    for r in runs:
        split = read_csv(out / "splits" / f"{r['run']}.csv")
        tests.add(frozenset(s["image"] for s in split if s["split"] == "test"))
        train = [s for s in split if s["split"] == "train"]
        assert len(train) >= int(r["shots"]) and len(train) == int(r["n_train"])
    assert len(tests) == 1  # the test split is the same for every budget and seed
    small = [int(r["n_train"]) for r in runs if r["shots"] == "1"]
    large = [int(r["n_train"]) for r in runs if r["shots"] == "4"]
    assert max(small) < min(large)
    assert (out / "few_shot_curve.png").is_file()
    summary = [s for s in read_csv(out / "summary.csv") if s["metric"] == "auroc_macro"]
    assert {s["group"] for s in summary} == {"1 shots", "4 shots"}


def test_shipped_protocols_load_and_bad_files_are_named(tmp_path):
    assert set(shipped_protocols()) >= {"seeds_folds", "leave_one_source_out", "few_shot"}
    assert set(ADAPTATION_MODELS) == set(ADAPTERS)
    seeds_folds = load_protocol("seeds_folds")
    assert seeds_folds.models == ["fcn_clip", "linear_probe"] and seeds_folds.seeds == [0, 1, 2]
    assert seeds_folds.folds == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("design: folds\nmodels: [linear_probe]\nseed: [0]\n")
    with pytest.raises(OptionError, match=r"bad.yaml: unknown key 'seed'; did you mean 'seeds'"):
        load_protocol(bad)
    bad.write_text("design: folds\nmodels: [resnet]\n")
    with pytest.raises(OptionError, match=r"unknown model\(s\) \['resnet'\]"):
        load_protocol(bad)


def test_an_image_model_runs_on_its_split_file_and_tta_is_reported_beside_it(synthetic, tmp_path):
    protocol = {
        "design": "folds",
        "models": ["zero_shot"],
        "seeds": [3],
        "tta": "flip",
        "metrics": ["qwk", "auroc_macro"],
        "bootstrap_resamples": 0,
    }
    out = reproduce(protocol, synthetic, tmp_path / "report", tmp_path)
    runs = {r["model"]: r for r in read_csv(out / "runs.csv")}
    assert set(runs) == {"zero_shot", "zero_shot+flip"} and runs["zero_shot"]["run"] == "seed3"
    tested = sorted((out / "runs" / "zero_shot" / "seed3").rglob("metrics.json"))
    documents = [d for d in (json.loads(p.read_text()) for p in tested) if d["stage"] == "test"]
    assert [d.get("tta") for d in documents] == [None, "flip"]
    split = Counter(r["split"] for r in read_csv(out / "splits" / "seed3.csv"))
    for document in documents:  # each test read the run's split file back
        assert document["split"]["split"] == "file:seed3.csv"
        assert document["metrics"]["num_images"] == split["test"] == int(runs["zero_shot"]["n_test"])
    assert "zero_shot - zero_shot+flip" in (out / "report.md").read_text()
