"""The gate measures a field at the resolution the camera gave it, whatever frame surrounds it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from drgrade.data.preprocess import area_resize
from drgrade.data.quality import measure


def framed(disc: np.ndarray, height: int, width: int) -> np.ndarray:
    """``disc`` centred in a black frame of ``height`` x ``width``."""
    frame = np.zeros((height, width, 3), np.uint8)
    top, left = (height - disc.shape[0]) // 2, (width - disc.shape[1]) // 2
    frame[top : top + disc.shape[0], left : left + disc.shape[1]] = disc
    return frame


def test_a_field_is_measured_alike_in_a_phone_adapters_large_frame_and_a_tight_one():
    """The same 675-px field in a 2000x1500 phone frame and in an 800x800 frame: the same signs.

    (The gate once shrank every picture over 1024 px first, so the phone's field was measured
    from a 345-px copy blown up to 512: its focus read 23 instead of 30.)
    """
    disc = cv2.resize(skdata.retina(), (675, 675), interpolation=cv2.INTER_AREA)
    phone, tight = measure(framed(disc, 1500, 2000)), measure(framed(disc, 800, 800))
    for sign in ("focus", "vessel_density", "vessel_colour", "texture", "optic_disc", "brightness"):
        assert phone[sign] == pytest.approx(tight[sign], rel=0.02), sign


@pytest.mark.parametrize(
    ("shape", "size"), [((1000, 1250), (320, 256)), ((801, 799), (256, 257)), ((900, 700), (512, 400))]
)
def test_area_resize_is_the_area_average_by_halving_first(shape, size):
    """On a photograph's detail (not pixel noise, where the halved boxes' footprints show) the result
    is the one-step area average within a few grey levels."""
    noise = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 6).astype(float)  # detail a few pixels wide
    image = np.clip((blurred - 128) * 8 + 128, 0, 255).astype(np.uint8)  # at a photograph's contrast
    ours, direct = area_resize(image, size), cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    assert ours.shape == direct.shape
    difference = np.abs(ours.astype(int) - direct)
    # even sides: within half a grey level on average; an odd side's dropped row shifts the grid by
    # under a pixel of the result, a few grey levels on these steep, eight-fold contrasted edges
    assert difference.mean() < (2.5 if shape[0] % 2 else 0.5) and difference.max() <= 24
