"""Choices made on validation, told as they were made: ``auto``'s margin and zero-shot's ties.

A choice between near-equals is not a finding: ``auto`` keeps fitted thresholds only when their
gain is beyond noise (``thresholds.choose_objective``) and says so in one line (``choice_text``);
zero-shot template sets tied on the selection metric are told apart by a stated secondary figure
and the tie is reported (``choose_template_set``, ``tie_text``). The console, metrics.json and the
report use these same texts.
"""

from __future__ import annotations

import math

#: What tells template sets tied on the selection metric apart: a decision-free ranking figure.
TIE_BREAK = "auroc_macro"


def _rank(value: float | None) -> float:
    """A score for ``max``: an undefined one (None) ranks last, an exact 0.0 is a score."""
    return -math.inf if value is None else value


def choose_template_set(
    scores: dict[str, float | None], secondary: dict[str, float | None], metric: str
) -> tuple[str, dict | None]:
    """The best template set by ``metric``; a tie broken by ``secondary`` (``TIE_BREAK``), then list order.

    Args:
        scores: each set's validation ``metric``, in list order.
        secondary: each set's validation ``TIE_BREAK`` figure.
        metric: the selection metric's name.

    Returns:
        The chosen set, and the tie (the tied sets, their shared score, the tie-break figures and
        the choice), or None when one set was ahead.
    """
    top = max(_rank(v) for v in scores.values())
    tied = [name for name, value in scores.items() if _rank(value) == top]
    best = max(tied, key=lambda name: _rank(secondary[name]))  # max keeps the first of equals
    if len(tied) == 1:
        return best, None
    return best, {
        "metric": metric,
        "score": scores[best],
        "tied": tied,
        "broken_by": TIE_BREAK,
        "secondary": {name: secondary[name] for name in tied},
        "chosen": best,
        "then": "list order",
    }


def tie_text(tie: dict) -> str:
    """``4-way tie at qwk 0.0000 (a, b, c, d); broken by validation auroc_macro: b (0.5213)``."""
    score = "undefined" if tie["score"] is None else f"{tie['score']:.4f}"
    value = tie["secondary"][tie["chosen"]]
    shown = "undefined" if value is None else f"{value:.4f}"
    return (
        f"{len(tie['tied'])}-way tie at {tie['metric']} {score} ({', '.join(tie['tied'])}); broken by "
        f"validation {tie['broken_by']}, then {tie['then']}: {tie['chosen']} ({shown})"
    )


def choice_text(choice: dict) -> str:
    """``auto`` threshold choice in one line: the candidate, its margin, the interval and the decision."""
    if "candidate" not in choice:  # recorded before margins were judged
        return f"{choice.get('objective')} (best cross-fitted QWK)"
    interval = choice["gain_interval"]
    shown = (
        "no gain" if interval is None else f"95% paired bootstrap {interval[0]:+.4f} to {interval[1]:+.4f}"
    )
    verdict = (
        f"beyond noise: {choice['candidate']} thresholds used"
        if choice["kept"]
        else "not beyond noise: argmax kept"
    )
    return (
        f"{choice['candidate']}: cross-fitted QWK gain over argmax {choice['gain']:+.4f} "
        f"({shown}; {choice['images']} images), {verdict}"
    )
