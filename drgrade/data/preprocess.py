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


def crop_fundus(image: np.ndarray, threshold: int = 10) -> np.ndarray:
    """Crop to the bounding box of pixels brighter than ``threshold`` and pad it to a square.

    Returns the image unchanged when nearly nothing is bright (an all-dark or odd image),
    rather than cropping to noise.
    """
    gray = image.max(axis=2) if image.ndim == 3 else image
    mask = gray > threshold
    if mask.mean() < 0.01:
        return image
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    cropped = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = cropped.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return cv2.copyMakeBorder(
        cropped, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, value=0
    )


def preprocess_fundus(image: np.ndarray, size: int) -> np.ndarray:
    """Crop to the fundus and resize to ``size`` x ``size`` (area interpolation when shrinking)."""
    square = crop_fundus(image)
    interpolation = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)
