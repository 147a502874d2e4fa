"""The learned gate's verdict, torch-free: one text for a quality checkpoint and for its ONNX graph.

A ``quality`` model (``drgrade.tasks.quality``) gives P(good), P(usable), P(reject) for a
fundus crop; a photograph whose most likely level is "reject" is not graded. ``predict`` and the
page ask the checkpoint, ``python -m drgrade.deploy --quality_onnx`` its exported graph; both
word the refusal with ``learned_verdict``, so their prediction files agree row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drgrade.data.sources.common import GRADABILITY

#: The quality model's classes (EyeQ's levels), in the order of its outputs.
LEVELS = GRADABILITY[:3]
REJECT = LEVELS.index("reject")
#: The one output of an exported quality model: [batch, 3] probabilities in ``LEVELS`` order.
QUALITY_OUTPUT = "quality"


def model_name(origin: str) -> str:
    """The file a quality model came from, as verdicts name it (``best.ckpt sha256:...`` -> ``best.ckpt``)."""
    return Path(origin.partition(" sha256:")[0]).name


def learned_verdict(probabilities: Sequence[float], name: str) -> str:
    """Why the quality model refuses a photograph, or "" when "reject" is not its most likely level.

    Args:
        probabilities: P(good), P(usable), P(reject).
        name: the checkpoint the model was trained as (its file name).
    """
    values = [float(p) for p in probabilities]
    if max(range(len(values)), key=values.__getitem__) != REJECT:
        return ""
    return f"ungradable: the quality model rejects it (P(reject) {values[REJECT]:.2f}, {name})"
