"""The image-quality gate: which photographs drgrade refuses to grade, and why.

A grader must not grade what a human grader would send back: an incomplete file (OpenCV fills
a truncated JPEG with grey and decodes it "successfully"), an image too small to show lesions,
one with no fundus in frame, a badly under- or over-exposed fundus, or a heavily blurred one.
Such images are *ungradable*: reported with the reason and the measured features, never given a
grade, as clinical systems report imageability. Every path uses this one gate: training setup,
``predict``, ``explain`` and ``python -m drgrade.deploy``.

The features are measured inside the fundus (pixels brighter than the dark surround), on a copy
resized to ``ANALYSIS_SIZE`` so that they do not depend on the camera's resolution.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from drgrade.data.duplicates import content_hash, difference_hash
from drgrade.data.images import ImageReadError, read_rgb
from drgrade.data.preprocess import brightest_channel
from drgrade.data.sources import Record

#: Side, in pixels, of the square the features are measured on.
ANALYSIS_SIZE = 512
#: A surround pixel's brightest channel stays at or below this (the fundus_box threshold).
SURROUND = 10


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
    """

    min_side: int = 128
    max_pixels: int = 40_000_000
    min_fundus_fraction: float = 0.15
    min_brightness: float = 25.0
    max_brightness: float = 185.0
    min_focus: float = 4.0


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


#: The measured features, in the order prediction files list them.
FEATURES = ("fundus_fraction", "brightness", "focus")


def file_is_complete(path: str | Path) -> bool:
    """False when a JPEG lacks its end-of-image marker or a PNG its IEND chunk (a cut-off file).

    Args:
        path: the image file.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read().rstrip(b"\x00")
    if head.startswith(b"\xff\xd8"):
        return tail.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG"):
        return b"IEND" in tail[-16:]
    return True


def measure(image: np.ndarray) -> dict[str, float]:
    """Fundus fraction, brightness and focus of an RGB uint8 image.

    Args:
        image: HxWx3 uint8 RGB.
    """
    small = cv2.resize(image, (ANALYSIS_SIZE, ANALYSIS_SIZE), interpolation=cv2.INTER_AREA)
    fundus = brightest_channel(small) > SURROUND
    fraction = float(fundus.mean())
    if fraction == 0:
        return {"fundus_fraction": 0.0, "brightness": 0.0, "focus": 0.0}
    inner = cv2.erode(fundus.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    luminance = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    laplacian = cv2.Laplacian(small[..., 1].astype(np.float32), cv2.CV_32F)
    return {
        "fundus_fraction": fraction,
        "brightness": float(luminance[fundus].mean()),
        "focus": float(laplacian[inner].var()) if inner.any() else 0.0,
    }


def size_problem(width: int, height: int, limits: QualityLimits) -> str | None:
    """Why an image of this size cannot be graded, or None.

    Args:
        width: pixels across.
        height: pixels down.
        limits: the thresholds.
    """
    if min(height, width) < limits.min_side:
        return f"too small to grade ({width}x{height}; at least {limits.min_side} px a side)"
    if height * width > limits.max_pixels:
        return f"too large ({width}x{height}: over {limits.max_pixels:,} pixels)"
    return None


def assess(image: np.ndarray, limits: QualityLimits = QualityLimits()) -> Quality:
    """The gate's verdict on decoded pixels (the file-level checks are in ``check_image``).

    Args:
        image: HxWx3 uint8 RGB.
        limits: the thresholds.
    """
    height, width = image.shape[:2]
    problem = size_problem(width, height, limits)
    if problem:
        return Quality(False, problem)
    features = measure(image)
    checks = [
        (features["fundus_fraction"] < limits.min_fundus_fraction, "no fundus detected in frame"),
        (features["brightness"] < limits.min_brightness, "under-exposed"),
        (features["brightness"] > limits.max_brightness, "over-exposed"),
        (features["focus"] < limits.min_focus, "out of focus"),
    ]
    for failed, reason in checks:
        if failed:
            shown = ", ".join(f"{k} {v:.3g}" for k, v in features.items())
            return Quality(False, f"{reason} ({shown})", features)
    return Quality(True, "", features)


def check_image(path: str | Path, image: np.ndarray, limits: QualityLimits = QualityLimits()) -> Quality:
    """Raise ``UngradableImage`` (naming the file and the reason) unless the image is gradable.

    Args:
        path: the file ``image`` was decoded from.
        image: its pixels, HxWx3 uint8 RGB.
        limits: the thresholds.
    """
    if not file_is_complete(path):
        raise UngradableImage(f"{path}: ungradable: incomplete file (cut off before its end)")
    quality = assess(image, limits)
    if not quality.gradable:
        raise UngradableImage(f"{path}: ungradable: {quality.reason}", quality.features)
    return quality


def read_assessed(
    path: str | Path, limits: QualityLimits = QualityLimits()
) -> tuple[np.ndarray, dict[str, float]]:
    """Read ``path`` as RGB through the gate: (pixels, measured features), or ``UngradableImage`` naming why.

    Args:
        path: the image file.
        limits: the thresholds.
    """
    image = read_rgb(path)
    return image, check_image(path, image, limits).features


@dataclass(frozen=True)
class FileFacts:
    """What one read of a labelled image file establishes: the gate's verdict and its hashes."""

    reason: str
    digest: str
    dhash: np.ndarray | None


def inspect_file(path: str | Path, limits: QualityLimits = QualityLimits()) -> FileFacts:
    """The gate's verdict ("" when gradable), content hash and dHash of ``path``.

    Remembered per file version (path, size, mtime), so repeated setups in one process decode
    each file once.

    Args:
        path: the image file.
        limits: the thresholds.
    """
    stat = Path(path).stat()
    return _inspect(str(path), stat.st_size, stat.st_mtime_ns, limits)


@functools.lru_cache(maxsize=200_000)
def _inspect(path: str, size: int, mtime_ns: int, limits: QualityLimits) -> FileFacts:
    # large photographs decode at a reduced scale (IMREAD_REDUCED_*): features are measured at
    # 512 px anyway, and the size check reads the file's header
    digest = content_hash(path)
    try:
        with Image.open(path) as header:
            width, height = header.size
        problem = size_problem(width, height, limits)
        if problem:
            return FileFacts(f"ungradable: {problem}", digest, None)
        image = cv2.imread(path, _REDUCED.get(min(width, height) // 1024, cv2.IMREAD_REDUCED_COLOR_4))
        if image is None:
            return FileFacts("not a decodable image", digest, None)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        check_image(path, image, replace(limits, min_side=0))
    except (ImageReadError, OSError) as error:
        return FileFacts(str(error).removeprefix(f"{path}: "), digest, None)
    return FileFacts("", digest, difference_hash(image))


def gate_records(records: Sequence[Record], limits: QualityLimits = QualityLimits()) -> tuple[list, list]:
    """Split ``records`` into gradable ones and (record, reason) pairs for the ungradable.

    Args:
        records: labelled images.
        limits: the thresholds.
    """
    kept, refused = [], []
    for record in tqdm(records, desc="quality gate", leave=False, disable=len(records) < 500):
        reason = inspect_file(record.path, limits).reason
        if reason:
            refused.append((record, reason))
        else:
            kept.append(record)
    return kept, refused


_REDUCED = {0: cv2.IMREAD_COLOR, 1: cv2.IMREAD_REDUCED_COLOR_2}
