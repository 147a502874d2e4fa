"""Where the fundus camera's field of view is: a disc, fitted from its boundary, whatever the frame.

A fundus photograph is the camera's circular field of view on a dark frame, but cameras frame
it differently: the whole disc with black around it, the disc cut at the top and bottom (a
rectangular crop), a disc larger than the frame (the field fills it; only the corners are dark),
or a small disc in a large black frame (a phone on a slit-lamp adapter). Fundus tools find the
field from its *boundary* rather than from pixel counts: threshold a low-resolution copy, take
the edge of the lit region, and fit a circle to the edge points that are not the frame's own
border (where the field was cut). The circle then says where the field is and how large,
wherever the frame cuts it; the share of edge points on the circle says how round the lit
region is (a fundus field is round; a lamp behind a grid, a page or a wall are not).

``find_field`` works on a copy whose longer side is ``FIELD_SIZE`` pixels (about 1 ms), so its
cost does not grow with the camera's resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from drgrade.data.preprocess import brightest_channel

#: Longer side, in pixels, of the copy the field is found on.
FIELD_SIZE = 256
#: Edge points within this many pixels of the frame's border are the frame's cut, not the field's edge.
CUT_MARGIN = 2
#: An edge point this close to the circle (share of the radius) lies on it.
ON_CIRCLE = 0.04


@dataclass(frozen=True)
class Field:
    """The field of view found in one picture (coordinates in the picture's own pixels).

    ``cx, cy, radius``: the fitted circle (which may reach outside the frame). ``roundness``:
    share of the field's free edge points (those not on the frame's border) within
    ``ON_CIRCLE`` of the circle; 1 for a clean disc, 0 when there is no free edge at all (the
    lit region fills the frame). ``fraction``: share of the frame the lit region fills.
    ``fields``: lit regions at least half the size of the largest (2 for two photographs side
    by side). ``box``: rows and columns of the field's bounding square clipped to the frame.
    ``level``: the brightest-channel level separating the field from the frame.
    """

    cx: float
    cy: float
    radius: float
    roundness: float
    fraction: float
    fields: int
    box: tuple[slice, slice]
    level: float


def _lit_threshold(bright: np.ndarray) -> float:
    """The level between the frame's dark and the field's light, from the picture itself.

    Frames are not always black (a camera's dark blue or grey, JPEG noise) and fields not always
    bright (an under-exposed eye, a dark myopic fundus with one bright atrophic patch): the cut
    sits a quarter of the way from the darkest percentile to the median of what is clearly
    lit, and at least 8 grey levels above the dark.
    """
    dark = float(np.percentile(bright, 1))
    lit = bright[bright > dark + 10]
    level = float(np.median(lit)) if lit.size else dark
    return dark + max(8.0, 0.25 * (level - dark))


def fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Least-squares circle through ``points`` (N x 2, x and y): (cx, cy, radius).

    The algebraic fit (Kasa): x^2 + y^2 = 2 a x + 2 b y + c is linear in (a, b, c), so one
    ``lstsq`` solves it; the centre is (a, b) and the radius sqrt(c + a^2 + b^2).
    """
    design = np.column_stack([2 * points, np.ones(len(points))])
    (a, b, c), *_ = np.linalg.lstsq(design, (points**2).sum(1), rcond=None)
    return float(a), float(b), float(math.sqrt(max(c + a * a + b * b, 0.0)))


def robust_circle(points: np.ndarray, tries: int = 64) -> tuple[float, float, float]:
    """The circle most edge points lie on (RANSAC over triples, then refitted on its inliers).

    Returns (cx, cy, radius). A notch, a label or a ruler bar touching the field bends some of
    its edge; those points are outvoted, not averaged in. The circles through all sampled
    triples are solved at once (each is two linear equations: the perpendicular bisectors
    meet at the centre). Seeded: the same picture always gives the same circle.
    """
    rng = np.random.default_rng(0)
    a, b, c = (points[rng.integers(0, len(points), tries)] for _ in range(3))
    ab, ac = b - a, c - a
    determinant = 2 * (ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0])
    usable = np.abs(determinant) > 1e-6
    ab2, ac2 = (ab**2).sum(1), (ac**2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ux = (ac[:, 1] * ab2 - ab[:, 1] * ac2) / determinant
        uy = (ab[:, 0] * ac2 - ac[:, 0] * ab2) / determinant
    centres, radii = a + np.column_stack([ux, uy]), np.hypot(ux, uy)
    centres, radii = centres[usable], radii[usable]
    if len(radii):
        distance = np.hypot(
            points[None, :, 0] - centres[:, None, 0], points[None, :, 1] - centres[:, None, 1]
        )
        votes = (np.abs(distance - radii[:, None]) < ON_CIRCLE * radii[:, None]).sum(1)
        best = int(np.argmax(votes))
        inliers = np.abs(distance[best] - radii[best]) < ON_CIRCLE * radii[best]
        if inliers.sum() >= 3:
            return fit_circle(points[inliers])
    return fit_circle(points)


def _off_the_border(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which points lie inside the frame, more than ``CUT_MARGIN`` pixels from its border."""
    h, w = shape
    return (xs > CUT_MARGIN) & (xs < w - 1 - CUT_MARGIN) & (ys > CUT_MARGIN) & (ys < h - 1 - CUT_MARGIN)


def arc_coverage(edge: np.ndarray, circle: tuple[float, float, float], shape: tuple[int, int]) -> float:
    """Share of the circle's course inside the frame that the field's edge follows.

    1 for a whole disc or a disc cut by the frame (only the part inside the frame counts); near
    0 when the lit region's edge is ragged, straight or elsewhere (a wall, a page, grass).
    """
    cx, cy, r = circle
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    xs, ys = cx + r * np.cos(angles), cy + r * np.sin(angles)
    inside = _off_the_border(xs, ys, shape)
    if not inside.any():
        return 0.0
    drawn = np.full(shape, 255, np.uint8)
    drawn[edge[:, 1].astype(int), edge[:, 0].astype(int)] = 0
    distance = cv2.distanceTransform(drawn, cv2.DIST_L2, 3)
    near = distance[ys[inside].astype(int), xs[inside].astype(int)] <= max(1.5, ON_CIRCLE * r)
    return float(near.mean())


def _circle_of(edge: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """(cx, cy, radius, roundness) of the field whose edge is ``edge`` in a frame of ``shape``."""
    h, w = shape
    free = edge[_off_the_border(edge[:, 0], edge[:, 1], shape)]  # the frame's cut is not the field's edge
    if len(free) < 12:  # the lit region fills the frame: its circle is the frame's
        return (w - 1) / 2, (h - 1) / 2, math.hypot(w, h) / 2, 0.0
    cx, cy, radius = robust_circle(free)
    return cx, cy, radius, arc_coverage(free, (cx, cy, radius), shape)


def find_field(image: np.ndarray) -> Field | None:
    """The field of view of an RGB picture, or None when nothing in it is lit.

    Args:
        image: HxWx3 uint8 RGB, any size.
    """
    height, width = image.shape[:2]
    scale = FIELD_SIZE / max(height, width)
    small = cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    bright = cv2.medianBlur(brightest_channel(small), 3)
    level = _lit_threshold(bright)
    lit = (bright > level).astype(np.uint8)
    if not lit.any() and np.median(bright) > 10:  # evenly lit throughout (a blank page): all field, no frame
        lit[:] = 1
    lit = cv2.morphologyEx(lit, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = 1 + int(np.argmax(areas))
    fields = int(np.sum(areas >= 0.5 * areas.max()) if areas.max() >= 0.02 * lit.size else 0)
    contours, _ = cv2.findContours(
        (labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    edge = max(contours, key=len)[:, 0, :].astype(float)
    filled = np.zeros_like(lit)  # the field with its dark details (vessels, lesions) filled in
    cv2.drawContours(filled, [edge.astype(np.int32)[:, None, :]], -1, 1, -1)
    cx, cy, radius, roundness = _circle_of(edge, lit.shape)
    radius = min(radius, 2 * math.hypot(*lit.shape))
    top, bottom = max(0, int((cy - radius) / scale)), min(height, math.ceil((cy + radius) / scale) + 1)
    left, right = max(0, int((cx - radius) / scale)), min(width, math.ceil((cx + radius) / scale) + 1)
    if bottom - top < 2 or right - left < 2:
        top, bottom, left, right = 0, height, 0, width
    return Field(
        cx=cx / scale,
        cy=cy / scale,
        radius=radius / scale,
        roundness=roundness,
        fraction=float(filled.mean()),
        fields=fields,
        box=(slice(top, bottom), slice(left, right)),
        level=level,
    )
