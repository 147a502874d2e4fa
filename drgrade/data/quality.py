"""The image-quality gate: which photographs drgrade refuses to grade, and why.

A grader must not grade what a human grader would send back, nor what is not a fundus photograph
at all: a confident "No DR" for a cat is the most dangerous answer a screening tool can give.
Refused images are *ungradable*: reported with the reason and the measured evidence, never given
a grade, as clinical systems report imageability. Every path uses this one gate: training setup,
``predict``, ``explain``, the ONNX runner and the web page.

The gate works in two steps, so a changed limit re-judges stored measurements without decoding:
``measure`` and ``verdict`` (the limits applied to the measurements). ``measure`` first finds the
camera's field of view from its boundary (``drgrade.data.field``: whole discs, discs cut at the
top and bottom, fields filling the frame, small discs in a phone adapter's black frame), then
measures everything *inside the field*, on the field's square resized to ``ANALYSIS_SIZE``, so
the numbers depend neither on the camera's resolution nor on how it frames the field.

Two kinds of claim are kept apart. "Not a fundus photograph" is said only with strong evidence
that no retina is there: no round field *and* no sign of a retina. Everything else a real camera
gets wrong (exposure, colour, focus, a field without a recognisable retina) is a quality verdict
that sends the photograph to a human. In order:

1. an incomplete file (cut off: no end marker, or uniform grey rows where the decoder filled
   missing data), a size outside the limits;
2. no field in the picture, or two (two photographs side by side in one export);
3. not a fundus photograph: no round field and the retina's signs missing;
4. under- or over-exposed, an unusual colour (grey, green or blue), out of focus;
5. no retina recognised in the field. A retina shows four signs, each measured: a bright optic
   disc, vessels that are dark in green light but faint in red (blood absorbs green; the
   physics of every fundus camera), a fine texture (no coarse edges: fur, a grid, a cup's
   rim), and thin dark ridges on a modest share of the field. Two signs missing, or one
   clearly contradicted (a flat disc with no optic disc at all, a coarse texture), and the
   picture is a look-alike: a red lamp behind a grid, a red disc with drawn lines, a cat or a
   cup through a circular aperture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from drgrade.data.field import Field, find_field
from drgrade.data.images import MAX_PIXELS, ImageReadError
from drgrade.data.preprocess import area_resize, brightest_channel

#: Side, in pixels, of the square (the field's bounding square) the features are measured on.
ANALYSIS_SIZE = 512
#: A surround pixel's brightest channel stays at or below this (the fundus_box threshold).
SURROUND = 10
#: The measured features, in the order prediction files list them.
FEATURES = (
    "fundus_fraction",
    "brightness",
    "focus",
    "field_roundness",
    "red_ratio",
    "vessel_density",
    "optic_disc",
    "vessel_colour",
    "texture",
    "fields",
)


@dataclass(frozen=True)
class QualityLimits:
    """Where the gate draws its lines.

    Args:
        min_side: fewest pixels on the shorter side.
        max_pixels: most pixels in all (no fundus camera comes near; guards against decompression bombs).
        min_fundus_fraction: least share of the frame the field must fill (a phone adapter's
            disc of 30% of the frame's height fills about 0.05).
        min_field_pixels: least diameter, in the picture's own pixels, of a disc as large as the field.
        min_roundness: least share of the circle's course inside the frame that the field's
            edge follows for the field to count as round (a field cropped to a rectangle inside
            a dark frame keeps about 0.2; a wall, a page, a cat near 0).
        min_brightness: least mean luminance (0-255) inside the field (under-exposed below).
        max_brightness: most mean luminance inside the field (over-exposed above).
        min_red_ratio: least mean red over the mean of green and blue inside the field (colour
            fundus photographs are about 1.3-3.5; grey, green or blue pictures about 1 or less).
        min_focus: least focus score (variance of the Laplacian of the green channel inside the
            field at 512 px); heavy blur falls far below it.
        min_optic_disc / weakest_optic_disc: the optic disc sign: the brightest spot of the
            field (blurred at a disc's scale) over the field's median luminance. Below the first
            the sign is missing; below the second it is contradicted (a flat disc).
        max_vessel_colour / worst_vessel_colour: the vessel sign: the dark ridges' contrast in
            red over their contrast in green (vessels 0.2-0.6, up to 0.9 in dark photographs;
            achromatic lines, fur, a grid 0.8-1.2).
        max_texture / worst_texture: the texture sign: spread of the green channel's fine
            detail away from the vessels, in grey levels (a retina 2-8; fur, a cup, a grid 11-20).
        min_vessel_density / usual_vessel_density / max_vessel_density: the ridge sign: the
            share of the field on thin dark ridges of the green channel; below the first there
            are no vessels, above the second the sign is missing, above the third the ridges are
            texture (grass, gravel, cells), not vessels.
        max_grey_fill: most share of rows at the bottom that may be uniform decoder grey.
    """

    min_side: int = 128
    max_pixels: int = MAX_PIXELS
    min_fundus_fraction: float = 0.02
    min_field_pixels: int = 96
    min_roundness: float = 0.5
    min_brightness: float = 25.0
    max_brightness: float = 185.0
    min_red_ratio: float = 1.1
    min_focus: float = 4.0
    min_optic_disc: float = 1.4
    weakest_optic_disc: float = 1.2
    max_vessel_colour: float = 0.7
    worst_vessel_colour: float = 1.1
    max_texture: float = 8.0
    worst_texture: float = 10.0
    min_vessel_density: float = 0.02
    usual_vessel_density: float = 0.45
    max_vessel_density: float = 0.5
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


#: How far from a file's end its end marker may lie: cameras and phones append bytes after it
#: (``\r\n``, padding, a maker's trailer), which every decoder ignores.
TRAILER_BYTES = 4096


def file_is_complete(data: bytes) -> bool:
    """False when a JPEG lacks its end-of-image marker or a PNG its IEND chunk (a cut-off file).

    The marker is looked for near the end rather than at it: bytes after the end marker are
    common and harmless. A JPEG's compressed data cannot hold the end marker (a 0xFF byte there
    is always followed by 0x00 or a restart code), so finding it means the picture data ended.
    """
    tail = data[-TRAILER_BYTES:]
    if data.startswith(b"\xff\xd8"):
        return b"\xff\xd9" in tail
    if data.startswith(b"\x89PNG"):
        return b"IEND" in tail
    return True


def grey_fill(small: np.ndarray) -> float:
    """Share of rows at the bottom that are uniform mid-grey: libjpeg's fill for data a cut file lacks."""
    rows = small.reshape(small.shape[0], -1).astype(np.int16)
    uniform = (rows.max(1) - rows.min(1) <= 2) & (np.abs(rows.mean(1) - 128) <= 8)
    filled = len(uniform) - int(np.argmin(uniform[::-1])) if not uniform.all() else len(uniform)
    return filled / len(uniform) if uniform[-1] else 0.0


def field_square(image: np.ndarray, found: Field) -> tuple[np.ndarray, np.ndarray]:
    """The field's bounding square at ``ANALYSIS_SIZE`` and the field's mask on it.

    The square is cut from the picture around the fitted circle (padded with black where the
    frame cut the field), so a phone adapter's small disc and a frame-filling field are
    measured at the same scale. The mask is the circle (shrunk by 3% to stay off its rim) where
    the picture is brighter than the frame.
    """
    rows, cols = found.box
    cut = image[rows, cols]
    height, width = cut.shape[:2]
    scale = ANALYSIS_SIZE / max(height, width)
    inside = (max(1, round(width * scale)), max(1, round(height * scale)))
    cut = area_resize(cut, inside)  # shrink, then pad: no full-size copy
    top, left = (ANALYSIS_SIZE - inside[1]) // 2, (ANALYSIS_SIZE - inside[0]) // 2
    square = cv2.copyMakeBorder(
        cut, top, ANALYSIS_SIZE - inside[1] - top, left, ANALYSIS_SIZE - inside[0] - left, cv2.BORDER_CONSTANT
    )
    centre = ((found.cx - cols.start) * scale + left, (found.cy - rows.start) * scale + top)
    circle = np.zeros((ANALYSIS_SIZE, ANALYSIS_SIZE), np.uint8)
    cv2.circle(circle, (round(centre[0]), round(centre[1])), round(0.97 * found.radius * scale), 1, -1)
    return square, circle & (brightest_channel(square) > found.level).astype(np.uint8)


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of a 512-px picture at ``sigma`` pixels (float32), done at a quarter of the size."""
    small = cv2.resize(image, (ANALYSIS_SIZE // 4, ANALYSIS_SIZE // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigma / 4)
    return cv2.resize(small, (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_LINEAR)


def _median_u8(values: np.ndarray) -> float:
    """The median of uint8 values from their histogram (several times faster than sorting)."""
    counts = np.cumsum(np.bincount(values, minlength=256))
    return float(np.searchsorted(counts, counts[-1] / 2))


def retina_signs(square: np.ndarray, inner: np.ndarray) -> dict[str, float]:
    """The four measured signs of a retina inside the field (see the module's docstring).

    Args:
        square: the field's square, RGB uint8 at ``ANALYSIS_SIZE``.
        inner: the field's mask, eroded away from its rim (bool).
    """
    vessel_scale = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    surround = _smooth(square, 10)  # each channel's local level, in one pass
    # dark thin detail (uint8 morphology: several times faster), relative to its surround: in
    # green everywhere, in red only where the vessel colour is judged
    red, green = (
        cv2.morphologyEx(np.ascontiguousarray(square[..., i]), cv2.MORPH_BLACKHAT, vessel_scale)
        for i in (0, 1)
    )
    ridges = green.astype(np.float32) / (surround[..., 1] + 4)
    luminance = cv2.cvtColor(square, cv2.COLOR_RGB2GRAY)
    illumination = surround @ np.float32([0.299, 0.587, 0.114])  # luminance is linear in the channels
    # colour is judged where the field is well lit: in a shadow or at a dim rim the red channel
    # sits near its floor and its relative contrast is noise
    typical = float(np.median(illumination[::4, ::4][inner[::4, ::4]]))  # smooth: every 16th pixel tells
    lit = inner & (illumination > 0.6 * typical)
    judged = ridges[lit]
    strongest = lit.copy()
    strongest[lit] = judged > np.percentile(judged, 97) if judged.size else judged
    green_contrast = float(np.median(ridges[strongest])) if strongest.any() else 0.0
    red_ridges = red[strongest].astype(np.float32) / (surround[..., 0][strongest] + 4)
    red_contrast = float(np.median(red_ridges)) if strongest.any() else 0.0
    level = square[..., 1].astype(np.float32)
    fine = (level - cv2.GaussianBlur(level, (0, 0), 4))[inner & (ridges < 0.04)]
    return {
        "vessel_density": float(np.mean(ridges[inner] > 0.08)),
        "optic_disc": float(illumination[inner].max()) / max(_median_u8(luminance[inner]), 1.0),
        "vessel_colour": red_contrast / green_contrast if green_contrast > 0 else 1.0,
        "texture": float(fine.std()) if fine.size else 0.0,
    }


def measure(image: np.ndarray) -> dict[str, float]:
    """Every feature the gate judges, from RGB uint8 pixels of any size (measured inside the field).

    Args:
        image: HxWx3 uint8 RGB.
    """
    height, width = image.shape[:2]
    rows = cv2.resize(image, (min(width, 256), min(height, 256)), interpolation=cv2.INTER_NEAREST)
    measured = {name: 0.0 for name in FEATURES} | {"grey_fill": grey_fill(rows)}
    found = find_field(image)  # each step shrinks the picture itself (area_resize): no full-size copy
    if found is None:
        return measured
    measured |= {
        "fundus_fraction": found.fraction,
        "field_roundness": found.roundness,
        "fields": float(found.fields),
        # the diameter of a disc as large as the field, in the picture's own pixels
        "field_pixels": 2 * math.sqrt(found.fraction * height * width / math.pi),
    }
    square, mask = field_square(image, found)
    inner = cv2.erode(mask, np.ones((15, 15), np.uint8))
    if cv2.countNonZero(inner) < 100:
        return measured
    green = np.ascontiguousarray(square[..., 1])
    laplacian = cv2.Laplacian(green.astype(np.float32), cv2.CV_32F)
    red, g, b, _ = cv2.mean(square, mask=mask)
    _, spread = cv2.meanStdDev(laplacian, mask=inner)
    measured |= {
        "brightness": cv2.mean(cv2.cvtColor(square, cv2.COLOR_RGB2GRAY), mask=mask)[0],
        "focus": float(spread.ravel()[0] ** 2),
        "red_ratio": float(red / max((g + b) / 2, 1.0)),
    }
    return measured | retina_signs(square, inner.astype(bool))


def size_problem(width: int, height: int, limits: QualityLimits) -> str | None:
    """Why an image of this size cannot be graded, or None."""
    if min(height, width) < limits.min_side:
        return f"too small to grade ({width}x{height}; at least {limits.min_side} px a side)"
    if height * width > limits.max_pixels:
        return f"too large ({width}x{height}: over {limits.max_pixels:,} pixels)"
    return None


def retina_missing(measured: dict[str, float], limits: QualityLimits) -> list[str]:
    """The retina's signs that the measurements lack, with their values.

    A sign outside its usual range is missing; outside its wider range it is contradicted and
    counts twice (a flat disc with no bright spot at all is no retina, whatever else it shows).
    """
    ranges = {  # sign: (usual range, wider range)
        "optic_disc": ((limits.min_optic_disc, math.inf), (limits.weakest_optic_disc, math.inf)),
        "vessel_colour": ((0.0, limits.max_vessel_colour), (0.0, limits.worst_vessel_colour)),
        "texture": ((0.0, limits.max_texture), (0.0, limits.worst_texture)),
        "vessel_density": (
            (limits.min_vessel_density, limits.usual_vessel_density),
            (limits.min_vessel_density, limits.max_vessel_density),
        ),
    }
    missing = []
    for sign, ((low, high), (lowest, highest)) in ranges.items():
        value = measured[sign]
        if not low <= value <= high:
            missing += [f"{sign.replace('_', ' ')} {value:.3g}"] * (1 if lowest <= value <= highest else 2)
    return missing


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
    missing = retina_missing(measured, limits)
    round_field = measured["field_roundness"] >= limits.min_roundness
    lacking = ", ".join(dict.fromkeys(missing))
    checks = [
        (
            measured["fundus_fraction"] < limits.min_fundus_fraction
            or measured.get("field_pixels", 0.0) < limits.min_field_pixels,
            "no fundus in the picture",
        ),
        (measured["fields"] >= 2, "two photographs in one image"),
        (
            not round_field and len(missing) >= 2,
            f"not a fundus photograph (no round field, no retina: {lacking})",
        ),
        (measured["brightness"] < limits.min_brightness, "under-exposed, too dark"),
        (measured["brightness"] > limits.max_brightness, "over-exposed, too bright"),
        (
            measured["red_ratio"] < limits.min_red_ratio,
            "unusual colour (not the red-orange of a colour fundus photograph)",
        ),
        (measured["focus"] < limits.min_focus, "out of focus"),
        # a round field with one sign missing is a retina; without a round field, every sign must show
        (
            len(missing) >= (2 if round_field else 1),
            f"no retina recognised in the field ({lacking} out of a retina's range)",
        ),
    ]
    return next((f"{reason} ({shown})" for failed, reason in checks if failed), "")


def assess(image: np.ndarray, limits: QualityLimits = DEFAULT_LIMITS) -> Quality:
    """The gate's verdict on decoded pixels (a file's intake adds the file-level checks)."""
    height, width = image.shape[:2]
    problem = size_problem(width, height, limits)
    if problem:
        return Quality(False, problem)
    measured = measure(image)
    reason = verdict(measured, limits)
    features = {name: measured[name] for name in FEATURES}
    return Quality(not reason, reason, features)
