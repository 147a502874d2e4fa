"""The image-quality gate: which photographs drgrade refuses to grade, and why.

A grader must not grade what a human grader would send back, nor what is not a fundus photograph
at all: a confident "No DR" for a cat is the most dangerous answer a screening tool can give.
Refused images are *ungradable*: reported with the reason and the measured evidence, never given
a grade, as clinical systems report imageability. Every path uses this one gate: training setup,
``predict``, ``explain``, the ONNX runner and the web page.

The gate works in two steps, so a changed limit re-judges stored measurements without decoding:
``measure`` (on a copy resized to ``ANALYSIS_SIZE``, so the numbers do not depend on the camera's
resolution or the decode path) and ``verdict`` (the limits applied to the measurements). In order:

1. an incomplete file (cut off: no end marker, or uniform grey rows where the decoder filled
   missing data), a size outside the limits;
2. not a fundus photograph: a fundus is a bright disc on a dark surround (the frame's corners
   much darker than its centre), red-dominant inside, with vessel-like dark thin ridges;
3. no fundus in frame, badly under- or over-exposed, out of focus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from drgrade.data.images import MAX_PIXELS, ImageReadError
from drgrade.data.preprocess import brightest_channel

#: Side, in pixels, of the square the features are measured on.
ANALYSIS_SIZE = 512
#: A surround pixel's brightest channel stays at or below this (the fundus_box threshold).
SURROUND = 10
#: The measured features, in the order prediction files list them.
FEATURES = ("fundus_fraction", "brightness", "focus", "surround_contrast", "red_ratio", "vessel_density")


@dataclass(frozen=True)
class QualityLimits:
    """Where the gate draws its lines.

    Args:
        min_side: fewest pixels on the shorter side.
        max_pixels: most pixels in all (no fundus camera comes near; guards against decompression bombs).
        min_fundus_fraction: least share of the frame the fundus must fill.
        min_brightness: least mean luminance (0-255) inside the fundus (under-exposed below).
        max_brightness: most mean luminance inside the fundus (over-exposed above).
        min_focus: least focus score (variance of the Laplacian of the green channel inside the
            fundus at 512 px); heavy blur falls far below it.
        min_surround_contrast: least 1 - (corner brightness / centre brightness): a fundus sits on
            a dark surround (1 for black corners); a page, a cat or a wall fills the frame (near 0).
        min_red_ratio: least mean red over the mean of green and blue inside the fundus (a
            fundus is orange-red: about 2.5-3; grey, white or blue pictures about 1).
        min_vessel_density: least share of fundus pixels on dark thin ridges of the green channel.
        max_grey_fill: most share of rows at the bottom that may be uniform decoder grey.
    """

    min_side: int = 128
    max_pixels: int = MAX_PIXELS
    min_fundus_fraction: float = 0.15
    min_brightness: float = 25.0
    max_brightness: float = 185.0
    min_focus: float = 4.0
    min_surround_contrast: float = 0.6
    min_red_ratio: float = 1.8
    min_vessel_density: float = 0.02
    max_grey_fill: float = 0.02


#: The gate's default lines.
DEFAULT_LIMITS = QualityLimits()


@dataclass
class Quality:
    """The gate's verdict on one image and what it measured."""

    gradable: bool
    reason: str = ""
    features: dict[str, float] = field(default_factory=dict)


class UngradableImage(ImageReadError):
    """An image the gate refuses to grade; the message says why, ``features`` what was measured."""

    def __init__(self, message: str, features: dict[str, float] | None = None):
        super().__init__(message)
        self.features = features or {}


def file_is_complete(data: bytes) -> bool:
    """False when a JPEG lacks its end-of-image marker or a PNG its IEND chunk (a cut-off file)."""
    tail = data[-64:].rstrip(b"\x00")
    if data.startswith(b"\xff\xd8"):
        return tail.endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG"):
        return b"IEND" in tail[-16:]
    return True


def grey_fill(small: np.ndarray) -> float:
    """Share of rows at the bottom that are uniform mid-grey: libjpeg's fill for data a cut file lacks."""
    rows = small.reshape(small.shape[0], -1).astype(np.int16)
    uniform = (rows.max(1) - rows.min(1) <= 2) & (np.abs(rows.mean(1) - 128) <= 8)
    filled = len(uniform) - int(np.argmin(uniform[::-1])) if not uniform.all() else len(uniform)
    return filled / len(uniform) if uniform[-1] else 0.0


def _surround_contrast(bright: np.ndarray) -> float:
    """1 - median corner brightness / median centre brightness (corners: 8% squares)."""
    k = max(1, bright.shape[0] * 8 // 100)
    corners = np.concatenate([bright[:k, :k], bright[:k, -k:], bright[-k:, :k], bright[-k:, -k:]]).ravel()
    centre = bright[k * 3 : -k * 3, k * 3 : -k * 3]
    middle = float(np.median(centre)) if centre.size else 0.0
    return 1.0 - float(np.median(corners)) / middle if middle > 0 else 0.0


def measure(image: np.ndarray) -> dict[str, float]:
    """Every feature the gate judges, from RGB uint8 pixels of any size (measured at 512 px).

    Args:
        image: HxWx3 uint8 RGB.
    """
    small = cv2.resize(image, (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_AREA)
    bright = brightest_channel(small)
    fundus = bright > SURROUND
    measured = {name: 0.0 for name in FEATURES} | {"grey_fill": grey_fill(small)}
    measured["fundus_fraction"] = float(fundus.mean())
    measured["surround_contrast"] = _surround_contrast(bright)
    if not fundus.any():
        return measured
    # masked means with OpenCV (float64 sums, no copies of the masked pixels): the gate's hot loop
    mask = fundus.astype(np.uint8)
    inner = cv2.erode(mask, np.ones((15, 15), np.uint8))
    luminance = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    green = np.ascontiguousarray(small[..., 1])
    laplacian = cv2.Laplacian(green.astype(np.float32), cv2.CV_32F)
    red, g, b, _ = cv2.mean(small, mask=mask)
    ridges = cv2.morphologyEx(
        green, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    )
    inside = cv2.countNonZero(inner)
    _, spread = cv2.meanStdDev(laplacian, mask=inner) if inside else (0.0, np.zeros(1))
    measured |= {
        "brightness": cv2.mean(luminance, mask=mask)[0],
        "focus": float(spread.ravel()[0] ** 2) if inside else 0.0,
        "red_ratio": float(red / max((g + b) / 2, 1.0)),
        "vessel_density": cv2.countNonZero((ridges > 8).astype(np.uint8) & inner) / inside if inside else 0.0,
    }
    return measured


def size_problem(width: int, height: int, limits: QualityLimits) -> str | None:
    """Why an image of this size cannot be graded, or None."""
    if min(height, width) < limits.min_side:
        return f"too small to grade ({width}x{height}; at least {limits.min_side} px a side)"
    if height * width > limits.max_pixels:
        return f"too large ({width}x{height}: over {limits.max_pixels:,} pixels)"
    return None


def verdict(measured: dict[str, float], limits: QualityLimits = DEFAULT_LIMITS) -> str:
    """Why an image with these measurements is ungradable ("" when it is gradable).

    The reason is the one a person would give, with the measured evidence.

    Args:
        measured: from ``measure``.
        limits: the thresholds.
    """
    shown = ", ".join(f"{name.replace('_', ' ')} {measured[name]:.3g}" for name in FEATURES)
    if measured["grey_fill"] > limits.max_grey_fill:
        share = measured["grey_fill"]
        return f"incomplete file (the bottom {share:.0%} of the picture is the decoder's grey fill)"
    not_fundus = "not a fundus photograph"
    checks = [
        (measured["fundus_fraction"] < limits.min_fundus_fraction, "no fundus in the picture"),
        (measured["surround_contrast"] < limits.min_surround_contrast, f"{not_fundus} (no dark surround)"),
        (measured["brightness"] < limits.min_brightness, "under-exposed"),
        (measured["brightness"] > limits.max_brightness, "over-exposed"),
        (measured["red_ratio"] < limits.min_red_ratio, f"{not_fundus} (not red-dominant)"),
        (measured["focus"] < limits.min_focus, "out of focus"),
        (measured["vessel_density"] < limits.min_vessel_density, f"{not_fundus} (no vessels)"),
    ]
    return next((f"{reason} ({shown})" for failed, reason in checks if failed), "")


def assess(image: np.ndarray, limits: QualityLimits = QualityLimits()) -> Quality:
    """The gate's verdict on decoded pixels (a file's intake adds the file-level checks)."""
    height, width = image.shape[:2]
    problem = size_problem(width, height, limits)
    if problem:
        return Quality(False, problem)
    measured = measure(image)
    reason = verdict(measured, limits)
    features = {name: measured[name] for name in FEATURES}
    return Quality(not reason, reason, features)


def unmeasured() -> list[float]:
    """The feature columns of an image the gate could not measure."""
    return [math.nan] * len(FEATURES)
