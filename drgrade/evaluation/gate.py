"""How far the quality gate agrees with human gradability labels (``drgrade gate``).

Some datasets say which of their photographs graders could not grade: EyeQ labels EyePACS
photographs good / usable / reject, Messidor-2 has ``adjudicated_gradable``, DDR lists
ungradable photographs as grade 5. Taking "reject" as the positive class, the gate's
sensitivity is the share of human rejects it refuses and its specificity the share of gradable
photographs it passes, each with a Wilson 95% interval; per verdict ("too dark", "not a fundus
photograph", ...), how many rejects it catches and how many gradable photographs it refuses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drgrade.data.sources import Record
from drgrade.data.sources.common import GRADABILITY
from drgrade.evaluation.clinical import sensitivity_specificity
from drgrade.evaluation.proportions import wilson_interval

#: The verdict of a photograph the gate passes.
PASSED = "passed"
#: The trailing evidence of a verdict: ``(brightness 8.7, ...)``.
_EVIDENCE = re.compile(r"\s*\([^()]*\)\s*$")


@dataclass(frozen=True)
class Judged:
    """One photograph: what the humans said (``GRADABILITY``) and the gate's reason ("" if passed)."""

    record: Record
    human: str
    verdict: str

    @property
    def refused(self) -> bool:
        """Whether the gate refused it."""
        return bool(self.verdict)

    @property
    def rejected(self) -> bool:
        """Whether the humans rejected it."""
        return self.human == "reject"

    @property
    def misjudged(self) -> bool:
        """Whether the gate and the humans disagree."""
        return self.refused != self.rejected

    @property
    def kind(self) -> str:
        """The verdict without its evidence (``under-exposed``), or ``passed``."""
        return verdict_kind(self.verdict)


def verdict_kind(reason: str) -> str:
    """``ungradable: under-exposed (fundus fraction 0.59, ...)`` -> ``under-exposed``; "" -> ``passed``."""
    if not reason:
        return PASSED
    text = reason.removeprefix("ungradable: ")
    stripped = _EVIDENCE.sub("", text)
    return stripped or text


def agreement(judged: Sequence[Judged]) -> dict:
    """The gate against the humans: sensitivity and specificity for "reject", the confusion, per verdict.

    Args:
        judged: every labelled photograph with the gate's verdict.
    """
    refused = np.array([j.refused for j in judged], bool)
    rejected = np.array([j.rejected for j in judged], bool)
    overall = sensitivity_specificity(refused, rejected)
    confusion = {
        human: {"passed": n - caught, "refused": caught}
        for human in GRADABILITY
        if (n := sum(j.human == human for j in judged))
        for caught in [sum(j.human == human and j.refused for j in judged)]
    }
    rejects, gradable = int(rejected.sum()), int((~rejected).sum())
    per_verdict = {}
    for kind, total in Counter(j.kind for j in judged).most_common():
        caught = sum(j.kind == kind and j.rejected for j in judged)
        per_verdict[kind] = {
            "images": total,
            "human_reject": caught,
            "human_gradable": total - caught,
            # of all rejects, the share this verdict caught (sums to the sensitivity over refusals)
            "share_of_rejects": caught / rejects if rejects else None,
            "share_of_rejects_ci": wilson_interval(caught, rejects),
            # of all gradable photographs, the share this verdict refused (sums to 1 - specificity)
            "share_of_gradable": (total - caught) / gradable if gradable else None,
            "share_of_gradable_ci": wilson_interval(total - caught, gradable),
        }
    return {
        "images": len(judged),
        "human_reject": rejects,
        "human_gradable": gradable,
        "gate_refused": int(refused.sum()),
        **{k: v for k, v in overall.items() if k not in ("positives", "negatives")},
        "confusion": confusion,
        "per_verdict": per_verdict,
        "misjudged": sum(j.misjudged for j in judged),
    }


def summary_text(result: dict) -> str:
    """The console's lines: sensitivity and specificity with intervals, then one line per verdict."""

    def rate(value: float | None, interval: list[float] | None) -> str:
        if value is None:
            return "undefined (none)"
        return f"{value:.3f} (95% CI {interval[0]:.3f}-{interval[1]:.3f})"

    lines = [
        f"{result['images']} photographs with gradability labels: {result['human_reject']} rejected by "
        f"the graders, {result['human_gradable']} gradable; the gate refuses {result['gate_refused']}",
        f"sensitivity for reject: {rate(result['sensitivity'], result['sensitivity_ci'])}",
        f"specificity for reject: {rate(result['specificity'], result['specificity_ci'])}",
        "per verdict: images (human reject / gradable)",
    ]
    for kind, row in result["per_verdict"].items():
        lines.append(f"  {kind}: {row['images']} ({row['human_reject']} / {row['human_gradable']})")
    return "\n".join(lines)
