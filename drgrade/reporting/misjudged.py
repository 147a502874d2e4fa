"""A sheet of the photographs the quality gate misjudged, each captioned with both verdicts.

What ``drgrade gate`` draws so a person can see *why* the gate and the graders disagree: a
photograph the graders rejected that the gate passed, or a gradable one it refused.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt

from drgrade.data.images import ImageReadError, read_rgb
from drgrade.evaluation.gate import Judged
from drgrade.files import save_figure

#: Thumbnails per row, and their side in pixels.
COLUMNS, THUMBNAIL = 6, 192


def thumbnail(path: Path) -> object:
    """The photograph shrunk to ``THUMBNAIL`` on its longer side (None when it does not decode)."""
    try:
        image = read_rgb(path, target=THUMBNAIL)
    except ImageReadError:
        return None
    scale = THUMBNAIL / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def misjudged_sheet(judged: Sequence[Judged], out: Path, limit: int = 48) -> Path | None:
    """Draw up to ``limit`` misjudged photographs into ``out`` (PNG); None when there are none.

    Args:
        judged: every labelled photograph with the gate's verdict (only the misjudged are drawn).
        out: the PNG to write.
        limit: most thumbnails drawn (the rest are counted in the title).
    """
    wrong = [j for j in judged if j.misjudged]
    if not wrong:
        return None
    shown = wrong[:limit]
    columns = min(COLUMNS, len(shown))
    rows = (len(shown) + columns - 1) // columns
    figure, axes = plt.subplots(
        rows, columns, figsize=(max(columns, 3) * 2.4, rows * 3.0 + 0.6), squeeze=False
    )
    for axis in axes.ravel():
        axis.axis("off")
    for axis, item in zip(axes.ravel(), shown, strict=False):
        picture = thumbnail(item.record.path)
        if picture is not None:
            axis.imshow(picture)
        verdict = textwrap.fill(f"gate: {item.kind}", 30)
        axis.set_title(
            f"{item.record.path.name[:28]}\ngraders: {item.human}\n{verdict}",
            fontsize=7,
            color="#b00020" if item.rejected else "#1f4e9c",
        )
    more = f" (first {len(shown)} of {len(wrong)})" if len(wrong) > len(shown) else ""
    title = (
        f"Photographs the quality gate misjudged{more}: red, graders rejected but the gate passed; "
        "blue, gradable but refused"
    )
    figure.suptitle(textwrap.fill(title, 18 * max(columns, 3)), fontsize=9)
    figure.tight_layout()
    save_figure(figure, out)
    plt.close(figure)
    return out
