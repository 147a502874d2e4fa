import numpy as np
import pytest
import torch
from sklearn.metrics import (
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from drgrade.decision.apply import decide
from drgrade.decision.thresholds import calibrate_thresholds
from drgrade.evaluation.metrics import compute_metrics
from drgrade.grades import GRADES


def random_case(seed: int, absent: int | None = None, n: int = 400):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 5, n)
    if absent is not None:
        targets[targets == absent] = (absent + 1) % 5
    logits = rng.normal(size=(n, 5)) + 1.5 * np.eye(5)[targets]
    probs = torch.tensor(logits).softmax(1).float()
    return probs, torch.tensor(targets), probs.argmax(1)


@pytest.mark.parametrize("absent", [None, 3])
def test_metrics_equal_scikit_learn(absent):
    probs, targets, preds = random_case(0, absent)
    m = compute_metrics(probs, targets, preds)
    y, p = targets.numpy(), preds.numpy()
    precision, recall, f1, _ = precision_recall_fscore_support(y, p, labels=range(5), zero_division=0)
    for g in GRADES:
        if absent == g.index:  # never true: undefined, not "0.000" (and so is all of it if never decided)
            assert m.metrics[f"recall_{g.short}"] is None
            assert (m.metrics[f"precision_{g.short}"] is None) == (m.metrics[f"f1_{g.short}"] is None)
            assert (m.metrics[f"precision_{g.short}"] is None) == (g.index not in p)
            continue
        assert m.metrics[f"precision_{g.short}"] == pytest.approx(precision[g.index], abs=1e-6)
        assert m.metrics[f"recall_{g.short}"] == pytest.approx(recall[g.index], abs=1e-6)
        assert m.metrics[f"f1_{g.short}"] == pytest.approx(f1[g.index], abs=1e-6)
    # macro precision over the decided grades, macro recall over the present ones: never a 0 for "undefined"
    decided, true = sorted(set(p.tolist())), sorted(set(y.tolist()))
    macro_p = precision_recall_fscore_support(y, p, labels=decided, average="macro", zero_division=0)[0]
    macro_r = precision_recall_fscore_support(y, p, labels=true, average="macro", zero_division=0)[1]
    assert m.metrics["macro_precision"] == pytest.approx(macro_p, abs=1e-6)
    assert m.metrics["macro_recall"] == pytest.approx(macro_r, abs=1e-6)
    assert (m.metrics["macro_precision_grades"], m.metrics["macro_recall_grades"]) == (
        len(decided),
        len(true),
    )
    macro_f1 = precision_recall_fscore_support(y, p, average="macro", zero_division=0)[2]
    assert m.metrics["macro_f1"] == pytest.approx(macro_f1, abs=1e-6)
    assert m.metrics["accuracy"] == pytest.approx((y == p).mean(), abs=1e-6)
    assert m.metrics["qwk"] == pytest.approx(
        cohen_kappa_score(y, p, labels=list(range(5)), weights="quadratic"), abs=1e-5
    )
    assert np.array_equal(m.confusion.numpy(), confusion_matrix(y, p, labels=range(5)))
    for g in GRADES:
        if absent == g.index:
            assert m.metrics[f"auroc_{g.short}"] is None  # undefined, not 1.0 and not NaN
        else:
            expected = roc_auc_score(y == g.index, probs[:, g.index].numpy())
            assert m.metrics[f"auroc_{g.short}"] == pytest.approx(expected, abs=1e-5)
    present = [g.index for g in GRADES if g.index != absent]
    expected_macro = np.mean([roc_auc_score(y == k, probs[:, k].numpy()) for k in present])
    assert m.metrics["auroc_macro"] == pytest.approx(expected_macro, abs=1e-5)


def test_macro_precision_leaves_out_grades_never_decided():
    """Zero-shot decided one grade: its macro precision is that grade's, not a fifth of it."""
    targets = torch.tensor([0, 0, 1, 2, 3, 4, 0, 2])
    preds = torch.zeros(8).long()
    m = compute_metrics(torch.eye(5)[preds], targets, preds).metrics
    assert m["macro_precision"] == pytest.approx(3 / 8) and m["macro_precision_grades"] == 1
    assert m["macro_recall"] == pytest.approx(1 / 5) and m["macro_recall_grades"] == 5


def test_error_margins_and_referable():
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    preds = torch.tensor([0, 2, 4, 3, 1, 0])
    m = compute_metrics(torch.eye(5)[preds], targets, preds).metrics
    assert (m["exact"], m["off_by_one"], m["off_by_two_plus"]) == pytest.approx((0.5, 1 / 6, 2 / 6))
    # referable = grade >= 2: true referable are 2, 3, 4 -> predicted 4, 3, 1
    assert m["referable_sensitivity"] == pytest.approx(2 / 3)
    assert m["referable_specificity"] == pytest.approx(2 / 3)  # 0->0, 1->2 (false alarm), 0->0


def test_equal_thresholds_reproduce_argmax_and_rule_is_always_defined():
    probs, _, _ = random_case(1)
    assert torch.equal(decide(probs, torch.full((5,), 0.3)), probs.argmax(1))
    # no class reaches its (high) threshold: the rule still picks the best ratio, not class 0
    low = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])
    assert int(decide(low, torch.tensor([0.9, 0.9, 0.9, 0.2, 0.9]))) == 3


def test_calibration_recovers_known_thresholds():
    # class-k score is uniform; positives are exactly the images with score above t_k
    rng = np.random.default_rng(0)
    known = [0.3, 0.5, 0.7]
    scores = torch.tensor(rng.uniform(size=(3000, 3)))
    for k, t in enumerate(known):
        positive = scores[:, k] > t
        thresholds = calibrate_thresholds(
            torch.stack([scores[:, k], 1 - scores[:, k]], 1), (~positive).long(), "youden"
        )
        assert float(thresholds[0]) == pytest.approx(t, abs=0.01)
        f1_thresholds = calibrate_thresholds(
            torch.stack([scores[:, k], 1 - scores[:, k]], 1), (~positive).long(), "f1"
        )
        assert float(f1_thresholds[0]) == pytest.approx(t, abs=0.01)


@pytest.mark.parametrize("seed", range(5))
def test_the_one_qwk_equals_scikit_learn_and_names_its_arguments(seed):
    from drgrade.evaluation.kappa import qwk

    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 5, (200,), generator=generator)
    preds = torch.where(
        torch.rand(200, generator=generator) < 0.6, targets, torch.randint(0, 5, (200,), generator=generator)
    )
    assert qwk(targets=targets, preds=preds) == pytest.approx(
        cohen_kappa_score(targets, preds, weights="quadratic"), abs=1e-9
    )
    same = torch.zeros(10).long()
    assert qwk(targets=same, preds=same) is None  # undefined: no spread, and said so
    assert qwk(targets=same, preds=same, undefined=0.0) == 0.0  # what a search compares
    with pytest.raises(TypeError):
        qwk(preds, targets)  # positional: the order could be mistaken, so it is refused
