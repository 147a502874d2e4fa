"""Operating cuts that give nothing away: no other cut meeting the target does better on validation."""

from __future__ import annotations

import numpy as np
import pytest

from drgrade.decision import fitting
from drgrade.decision.fitting import cut_for_sensitivity, cut_for_specificity


def gapped_scores():
    """12 positives scoring >= 0.9924 and 78 negatives <= 0.2965: one wide gap between the classes."""
    rng = np.random.default_rng(0)
    positives = np.sort(rng.uniform(0.9924, 0.9999, 12))
    positives[0] = 0.9924
    negatives = rng.uniform(0.0, 0.2965, 78)
    negatives[0] = 0.2965
    scores = np.concatenate([positives, negatives])
    return scores, np.arange(90) < 12


def rates(scores, positive, cut):
    flagged = scores >= cut
    return (flagged & positive).sum(), (~flagged & ~positive).sum()


def test_a_sensitivity_cut_catches_every_positive_the_gap_allows():
    """The highest cut reaching 90% (the old rule) caught 11 of 12 at 78/78, though 12 of 12 cost nothing."""
    scores, positive = gapped_scores()
    cut = cut_for_sensitivity(scores, positive, 0.9)
    assert rates(scores, positive, cut) == (12, 78)
    assert cut == pytest.approx((0.2965 + 0.9924) / 2)  # the middle of the gap, not on a score


def test_a_specificity_cut_keeps_every_negative_the_gap_allows():
    """The lowest cut keeping 95% (the old rule) kept 75 of 78 negatives, though 78 cost no positive."""
    scores, positive = gapped_scores()
    cut = cut_for_specificity(scores, positive, 0.95)
    assert rates(scores, positive, cut) == (12, 78)
    assert cut == pytest.approx((0.2965 + 0.9924) / 2)


def test_no_cut_meeting_the_target_dominates_the_chosen_one():
    rng = np.random.default_rng(4)
    for _ in range(20):
        positive = rng.random(150) < 0.3
        scores = np.round(np.clip(rng.normal(0.5 + 0.2 * positive, 0.2), 0, 1), 2)  # ties, as in softmax
        for kind, finder in (("sensitivity", cut_for_sensitivity), ("specificity", cut_for_specificity)):
            cut = finder(scores, positive, 0.85)
            hits, kept = rates(scores, positive, cut)
            chosen = (hits / positive.sum(), kept / (~positive).sum())
            assert not np.isin(cut, scores)  # between scores, never on one
            for other_cut, other_hits, other_kept in fitting.operating_candidates(scores, positive):
                other = (other_hits / positive.sum(), other_kept / (~positive).sum())
                reached = other[0] if kind == "sensitivity" else other[1]
                if reached >= 0.85 and other != chosen:
                    assert not (other[0] >= chosen[0] and other[1] >= chosen[1]), (kind, other_cut, cut)
            assert (chosen[0] if kind == "sensitivity" else chosen[1]) >= 0.85


def test_every_candidate_cut_flags_what_it_says():
    scores = np.array([0.1, 0.4, 0.4, 0.7, 0.9])
    positive = np.array([False, False, True, True, True])
    candidates = fitting.operating_candidates(scores, positive)
    assert [c for c, *_ in candidates] == pytest.approx([0.05, 0.25, 0.55, 0.8, 0.95])
    for cut, hits, kept in candidates:
        assert rates(scores, positive, cut) == (hits, kept)


def test_a_cut_between_scores_a_float32_step_apart_splits_them_as_counted():
    """A nearly flat model's scores sit a few float32 steps apart: the float64 middle of such a gap,
    stored as the rule stores it (float32), fell onto the lower score and flagged the image the gap
    left out (the demo's zero-shot cut: on a validation score, dominated by flagging every image)."""
    import torch

    low = np.float32(0.60013634)
    steps = [low]
    for _ in range(5):
        steps.append(np.nextafter(steps[-1], np.float32(1)))
    scores = np.array(steps, dtype=np.float32)
    positive = np.array([False, True, False, True, True, True])
    for cut, hits, kept in fitting.operating_candidates(scores, positive):
        stored = torch.tensor([cut], dtype=torch.float32)
        flagged = torch.from_numpy(scores) >= stored
        assert int((flagged & torch.from_numpy(positive)).sum()) == hits
        assert int((~flagged & ~torch.from_numpy(positive)).sum()) == kept
    cut = cut_for_sensitivity(scores, positive, 0.9)
    stored = float(torch.tensor(cut, dtype=torch.float32))
    assert scores[1] >= stored > scores[0]  # every positive, and the lowest negative left out
