"""Clinical evaluation computations, each against an independent reference.

scikit-learn for AUROC / kappa / confusion-based metrics, the Wilson interval from its textbook
closed form, a brute-force bootstrap that materialises every resample, and hand loops for ECE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy as scipy_entropy
from scipy.stats import norm
from sklearn.metrics import accuracy_score, cohen_kappa_score, precision_recall_fscore_support, roc_auc_score

from drgrade.decision.fitting import (
    cut_for_sensitivity,
    cut_for_specificity,
    fit_operating_points,
    fit_temperature,
    uncertainty_cutoff,
)
from drgrade.decision.rule import DecisionRule
from drgrade.evaluation.bootstrap import (
    BootstrapSpec,
    confidence_intervals,
    paired_differences,
    resample_weights,
    resampled_metrics,
    weighted_auroc,
)
from drgrade.evaluation.clinical import (
    apply_operating_points,
    expected_calibration_error,
    per_patient_operating_points,
    referral_curves,
    wilson_interval,
)
from drgrade.evaluation.metrics import compute_metrics
from drgrade.grades import GRADES


def entropy(probs):
    return scipy_entropy(probs, axis=1)


def rule_with_cuts(cuts) -> DecisionRule:
    rule = DecisionRule("none", 0.9, 0.95)
    rule.operating_cuts.copy_(torch.tensor(cuts, dtype=torch.float))
    return rule


def flags_and_points(probs, cuts):
    rule = rule_with_cuts(cuts)
    return rule.operating_flags(torch.tensor(probs)).numpy(), rule.describe()["operating_points"]


def _toy(n: int = 120, seed: int = 0):
    """Probabilities that carry signal about the grades, with deliberately tied scores."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(5, size=n, p=[0.4, 0.15, 0.2, 0.1, 0.15])
    logits = rng.normal(size=(n, 5)) + 2.0 * np.eye(5)[targets]
    probs = np.round(softmax(logits, axis=1), 2)  # rounding creates ties, as real softmax outputs have
    probs = (
        (probs / probs.sum(1, keepdims=True)).astype(np.float32).astype(np.float64)
    )  # as torch stores them
    return probs, targets, probs.argmax(1)


def test_all_ones_weights_reproduce_the_point_metrics():
    probs, targets, preds = _toy()
    point = compute_metrics(torch.tensor(probs), torch.tensor(targets), torch.tensor(preds)).metrics
    resampled = resampled_metrics(np.ones((1, len(targets))), probs, targets, preds)
    for name, values in resampled.items():
        assert values[0] == pytest.approx(point[name], abs=1e-6), name
    assert point["qwk"] == pytest.approx(cohen_kappa_score(targets, preds, weights="quadratic"))
    assert point["referable_auroc"] == pytest.approx(roc_auc_score(targets >= 2, probs[:, 2:].sum(1)))
    absent = (targets != 3) & (preds != 3)  # grade 3 neither true nor decided: undefined in both
    point = compute_metrics(
        torch.tensor(probs[absent]), torch.tensor(targets[absent]), torch.tensor(preds[absent])
    )
    resampled = resampled_metrics(
        np.ones((1, int(absent.sum()))), probs[absent], targets[absent], preds[absent]
    )
    for name, values in resampled.items():
        expected = point.metrics[name]
        assert np.isnan(values[0]) if expected is None else values[0] == pytest.approx(expected, abs=1e-6), (
            name
        )


def test_weighted_auroc_equals_sklearn_on_the_repeated_sample():
    probs, targets, _ = _toy(seed=1)
    counts = np.random.default_rng(2).integers(0, 4, size=len(targets))
    repeated = np.repeat(np.arange(len(targets)), counts)
    for grade in range(5):
        expected = roc_auc_score(targets[repeated] == grade, probs[repeated, grade])
        got = weighted_auroc(counts[None].astype(float), probs[:, grade], targets == grade)[0]
        assert got == pytest.approx(expected, abs=1e-12)


def _brute_force(probs, targets, preds, weights) -> dict[str, np.ndarray]:
    """Materialise every resample and score it with scikit-learn."""
    out = {"accuracy": [], "qwk": [], "macro_recall": [], "auroc_no": []}
    true = sorted(set(targets.tolist()))  # macro recall averages the split's grades in every resample
    for row in weights:
        picked = np.repeat(np.arange(len(targets)), row.astype(int))
        t, p = targets[picked], preds[picked]
        out["accuracy"].append(accuracy_score(t, p))
        out["qwk"].append(cohen_kappa_score(t, p, weights="quadratic"))
        recall = precision_recall_fscore_support(t, p, labels=true, average="macro", zero_division=0)[1]
        out["macro_recall"].append(recall if set(true) <= set(t.tolist()) else np.nan)
        out["auroc_no"].append(roc_auc_score(t == 0, probs[picked, 0]))
    return {k: np.asarray(v) for k, v in out.items()}


def test_bootstrap_equals_a_brute_force_bootstrap_on_a_tiny_set():
    probs, targets, preds = _toy(n=40, seed=3)
    patients = [f"p{i // 2}" for i in range(len(targets))]  # pairs of eyes
    spec = BootstrapSpec(resamples=60, seed=7)
    weights = np.concatenate(list(resample_weights(patients, spec)))
    brute = _brute_force(probs, targets, preds, weights)
    fast = resampled_metrics(weights, probs, targets, preds)
    for name, expected in brute.items():
        np.testing.assert_allclose(fast[name], expected, atol=1e-9, err_msg=name)
    intervals, _ = confidence_intervals(probs, targets, preds, patients, spec)
    assert intervals["accuracy"] == pytest.approx(list(np.percentile(brute["accuracy"], [2.5, 97.5])))


def test_undefined_figures_stay_undefined_and_macro_auroc_keeps_its_grades():
    probs, targets, _ = _toy(n=60, seed=5)
    preds = np.where(targets == 4, 3, targets)  # proliferative never decided
    targets[:3] = 1  # make Mild rare, so some resamples lack it
    targets[targets == 1] = 0
    targets[0] = 1
    point = compute_metrics(torch.tensor(probs), torch.tensor(targets), torch.tensor(preds)).metrics
    assert point["precision_proliferative"] is None and point["recall_proliferative"] == 0.0
    spec = BootstrapSpec(resamples=400, seed=1)
    intervals, undefined = confidence_intervals(probs, targets, preds, [str(i) for i in range(60)], spec)
    assert intervals["precision_proliferative"] is None and undefined["precision_proliferative"] == 400
    # a resample without the one Mild image has no Mild AUROC: its macro AUROC is undefined too,
    # not an average over four grades (about (59/60)^60 = 37% of resamples)
    assert undefined["auroc_macro"] >= undefined["auroc_mild"]
    assert 0.25 < undefined["auroc_macro"] / 400 < 0.5
    weights = np.concatenate(list(resample_weights([str(i) for i in range(60)], spec)))
    resampled = resampled_metrics(weights, probs, targets, preds)
    macro = resampled["auroc_macro"]
    per_grade = np.stack([resampled[f"auroc_{g.short}"] for g in GRADES], 1)
    kept = ~np.isnan(macro)
    np.testing.assert_allclose(macro[kept], per_grade[kept].mean(1))


def test_patients_are_resampled_together_and_the_seed_fixes_the_draw():
    patients = ["a", "a", "b", "c", "c", "d"]
    first = np.concatenate(list(resample_weights(patients, BootstrapSpec(resamples=300, seed=1))))
    again = np.concatenate(list(resample_weights(patients, BootstrapSpec(resamples=300, seed=1))))
    np.testing.assert_array_equal(first, again)
    assert (first[:, 0] == first[:, 1]).all() and (first[:, 3] == first[:, 4]).all()
    # every resample draws four patients
    assert ((first[:, [0, 2, 3, 5]]).sum(1) == 4).all()


def test_interval_brackets_the_estimate_and_narrows_with_more_images():
    widths = []
    for n in (100, 1600):
        probs, targets, preds = _toy(n=n, seed=4)
        point = float((preds == targets).mean())
        low, high = confidence_intervals(
            probs, targets, preds, [str(i) for i in range(n)], BootstrapSpec(500)
        )[0]["accuracy"]
        assert low <= point <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5  # ~1/sqrt(16) = 4x narrower


def test_paired_difference_uses_the_same_resamples():
    probs, targets, preds = _toy(n=200, seed=5)
    patients = [str(i) for i in range(200)]
    same = paired_differences((probs, preds), (probs, preds), targets, patients, BootstrapSpec(200))
    assert same["accuracy"]["difference"] == 0 and same["accuracy"]["interval"] == [0.0, 0.0]
    worse = preds.copy()
    worse[:40] = (worse[:40] + 2) % 5
    diff = paired_differences((probs, preds), (probs, worse), targets, patients, BootstrapSpec(300))
    expected = (preds == targets).mean() - (worse == targets).mean()
    assert diff["accuracy"]["difference"] == pytest.approx(expected)
    low, high = diff["accuracy"]["interval"]
    assert 0 < low <= expected <= high


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (87, 100), (10, 10), (3, 7)])
def test_wilson_interval_matches_the_closed_form(successes, trials):
    z, p, n = norm.ppf(0.975), successes / trials, trials
    root = z * math.sqrt(z * z + 4 * n * p * (1 - p))
    expected = [
        (2 * n * p + z * z - root) / (2 * (n + z * z)),
        (2 * n * p + z * z + root) / (2 * (n + z * z)),
    ]
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=1e-9)
    assert wilson_interval(0, 0) is None


def test_operating_cuts_meet_their_targets():
    """That no other cut does better is tested in test_operating_cuts.py."""
    probs, targets, _ = _toy(n=300, seed=6)
    scores, positive = probs[:, 2:].sum(1), targets >= 2
    cut = cut_for_sensitivity(scores, positive, 0.9)
    assert (scores[positive] >= cut).mean() >= 0.9
    cut = cut_for_specificity(scores, positive, 0.95)
    assert (scores[~positive] < cut).mean() >= 0.95
    cuts = fit_operating_points(probs, targets, 0.9, 0.95)
    flags, described = flags_and_points(probs, cuts)
    points = apply_operating_points(flags, targets, described, probs)
    assert [p["name"] for p in points] == [
        "referable@sensitivity0.90",
        "referable@specificity0.95",
        "vtdr@sensitivity0.90",
        "vtdr@specificity0.95",
    ]
    assert points[0]["sensitivity"] >= 0.9 and points[1]["specificity"] >= 0.95
    low, high = points[0]["sensitivity_ci"]
    assert low <= points[0]["sensitivity"] <= high


def test_per_patient_view_refers_a_patient_when_either_eye_is_flagged():
    # patient a: worst eye moderate, only the healthy eye flagged -> still a true positive
    probs = np.array([[0.1, 0, 0.9, 0, 0], [0.9, 0.1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    targets = np.array([0, 2, 0, 0])
    flags, points = flags_and_points(probs, [0.5, math.nan, math.nan, math.nan])
    view = per_patient_operating_points(flags, targets, ["a", "a", "b", "b"], points)
    point = view["operating_points"][0]
    assert view["num_patients"] == 2
    assert (point["sensitivity"], point["specificity"]) == (1.0, 1.0)


def test_expected_calibration_error_matches_a_hand_loop():
    probs, targets, _ = _toy(n=500, seed=8)
    confidence, correct = probs.max(1), probs.argmax(1) == targets
    total = 0.0
    for b in range(16):  # bins [lo, hi) of width 1/15, and confidence exactly 1 on its own
        low, high = b / 15, (b + 1) / 15
        inside = (confidence >= low) & (confidence < high)
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    assert expected_calibration_error(probs, targets) == pytest.approx(total / len(targets))


def test_temperature_scaling_recovers_an_overconfident_model():
    rng = np.random.default_rng(9)
    logits = rng.normal(scale=2.0, size=(4000, 5))
    targets = np.array([rng.choice(5, p=p) for p in softmax(logits, axis=1)])
    temperature = fit_temperature(3.0 * logits, targets)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(softmax(3.0 * logits, axis=1), targets)
    after = expected_calibration_error(softmax(3.0 * logits / temperature, axis=1), targets)
    assert after < before / 3


def test_referral_curves_refer_the_least_certain_first():
    probs, targets, preds = _toy(n=400, seed=10)
    curves = referral_curves(probs, targets, preds, entropy(probs))
    assert curves["entropy"]["accuracy"][0] == pytest.approx((preds == targets).mean())
    # refer 50%: the kept half are the lowest-entropy images
    kept = np.argsort(entropy(probs), kind="stable")[:200]
    assert curves["entropy"]["accuracy"][-1] == pytest.approx((preds[kept] == targets[kept]).mean())
    assert curves["entropy"]["accuracy"][-1] > curves["entropy"]["accuracy"][0]  # uncertainty is informative
    area = curves["auc_accuracy"]["entropy"]
    assert min(curves["entropy"]["accuracy"]) <= area <= max(curves["entropy"]["accuracy"])
    cutoff = uncertainty_cutoff(entropy(probs), 0.1)
    assert (entropy(probs) > cutoff).mean() == pytest.approx(0.1, abs=0.01)
