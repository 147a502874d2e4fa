"""Reading fundus images of any bit depth and channel layout as 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from drgrade.errors import OptionError

#: File suffixes a folder of fundus photographs may hold (matched case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageReadError(RuntimeError):
    """An image file that is missing or does not decode."""


def list_images(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under ``folder`` (recursively, sorted) and the entries skipped, with why.

    The one folder listing of drgrade (predict, explain, deploy): an image-suffixed entry that is
    not a readable file (a dangling link, a folder named ``x.png``) is reported, never dropped.

    Args:
        folder: the folder to list.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OptionError(f"{folder} is not a folder of images")
    found, skipped = [], []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_file():
            found.append(path)
        elif path.is_symlink() and not path.exists():
            skipped.append((path, "dangling symbolic link"))
        elif not path.is_dir():
            skipped.append((path, "not a regular file"))
    return found, skipped


def read_rgb(path: str | Path) -> np.ndarray:
    """Read ``path`` as an ``HxWx3`` uint8 RGB array.

    Grayscale, RGBA and 16-bit images are converted rather than rejected: screening archives mix
    all of them, and the model only needs 8-bit colour.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB uint8 array; the suffix of ``path`` picks the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
        raise ImageReadError(f"{path}: could not be written")
