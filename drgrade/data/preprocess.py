"""Fundus preprocessing: crop to the fundus disc, pad to square, resize.

Fundus photographs carry black borders of varying width (APTOS especially); cropping to the
illuminated disc before resizing makes the retina fill the network's input whatever the camera.
"""

from __future__ import annotations

import cv2
import numpy as np

#: CLIP's normalisation constants (open_clip OPENAI_DATASET_MEAN / STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def brightest_channel(image: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of the three channels (numpy's ``max(axis=2)`` is ~10x slower).

    Args:
        image: HxWx3.
    """
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, size, interpolation=INTER_AREA)`` at a fraction of the cost of a large shrink.

    Area interpolation is a box average. OpenCV runs it by a whole factor on a fast path, by an
    uneven one on a general path several times slower (1250x1000 -> 320x256: 3 ms on one core;
    halving: 0.3 ms). So the picture is halved while it stays at least twice the target, and only
    the last, small step is uneven: nearly the same box average (on a photograph's detail, within
    a few grey levels; an odd last row or column is dropped before a halving, under a pixel of
    the result).

    Args:
        image: HxW or HxWxC.
        size: (width, height) wanted (an enlargement is one plain ``INTER_AREA`` resize).
    """
    width, height = size
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        rows, cols = image.shape[0] // 2, image.shape[1] // 2
        image = cv2.resize(image[: 2 * rows, : 2 * cols], (cols, rows), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def fundus_box(image: np.ndarray, threshold: int = 10) -> tuple[slice, slice] | None:
    """Rows and columns of the illuminated fundus (pixels brighter than ``threshold``).

    None when nearly nothing is bright (an all-dark or odd image), rather than cropping to noise.
    """
    gray = brightest_channel(image) if image.ndim == 3 else image
    mask = gray > threshold
    if mask.mean() < 0.01:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def crop_fundus(image: np.ndarray, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """Crop ``image`` to ``box`` (default: its own fundus box) and pad it to a centred square.

    Passing the image's box crops a companion array (a lesion mask) exactly like the image.
    """
    box = fundus_box(image) if box is None else box
    cropped = image if box is None else image[box]
    height, width = cropped.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return cv2.copyMakeBorder(
        cropped, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, value=0
    )


def resize_square(image: np.ndarray, size: int, interpolation: int | None = None) -> np.ndarray:
    """Resize a square array to ``size`` (area interpolation when shrinking, unless given)."""
    if interpolation is None:
        interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def preprocess_fundus(image: np.ndarray, size: int, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """Crop to the fundus, pad to a square and resize to ``size`` x ``size``.

    Args:
        image: HxWx3.
        size: the output side.
        box: the image's ``fundus_box`` when already found (None: found here).
    """
    return resize_square(crop_fundus(image, box), size)
