"""Text and numbers from files, made safe to print in Markdown (the report, the page's heading).

metrics.json, checkpoints and ONNX metadata are files someone else may have written: a model
name holding ``|``, a newline or ``<img onerror=...>`` would break a table or inject a heading,
a link or HTML into report.md. Every string read from a file goes through ``md`` before it is
printed, and every number through ``number``, which shows a value outside its meaningful range
(NaN, 1e308, a negative sensitivity) as ``invalid`` rather than as a figure.
"""

from __future__ import annotations

import math

#: Characters with a meaning in Markdown or HTML inline text, and their escaped forms.
_ESCAPES = str.maketrans(
    {
        **{c: "\\" + c for c in "\\`*_[]|"},
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "\n": " ",
        "\r": " ",
        "\t": " ",
    }
)
#: Bounds of a proportion (most figures) and of Cohen's kappa.
PROPORTION, KAPPA = (0.0, 1.0), (-1.0, 1.0)


def md(text: object) -> str:
    """``text`` as literal inline Markdown: one line, no markup, no HTML."""
    return str(text).translate(_ESCAPES)


def bounds_of(key: str) -> tuple[float, float]:
    """The range a figure named ``key`` can take (kappa-like figures -1..1, the rest 0..1)."""
    return KAPPA if "qwk" in key or "kappa" in key else PROPORTION


def valid(value: object, bounds: tuple[float, float] = PROPORTION) -> bool:
    """Whether ``value`` is a real, finite number within ``bounds``."""
    real = isinstance(value, int | float) and not isinstance(value, bool)
    return real and math.isfinite(value) and bounds[0] <= value <= bounds[1]


def number(value: object, bounds: tuple[float, float] = PROPORTION, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or ``invalid (...)`` when it is not a number within ``bounds``."""
    if not valid(value, bounds):
        return f"invalid ({md(repr(value)[:24])})"
    return f"{value:.{digits}f}"
