"""Reading fundus images, safely and once: the one decoder every path uses.

- From bytes (``np.fromfile`` + ``cv2.imdecode``), so any file name works, non-UTF-8 included.
- Width and height are read from the header first (PIL's lazy open): an image over the pixel
  limit, or too thin or elongated to be a photograph, is refused before a byte is decoded (a
  400 KB PNG can claim 20000 x 20000 pixels, a 372-byte one 1 x 40000).
- A JPEG much larger than needed is decoded at reduced scale by libjpeg's DCT scaling
  (``IMREAD_REDUCED_COLOR_2/4/8``), never below ``target`` pixels on its shorter side.
- EXIF orientation is applied the same way everywhere (training, predict, the runner, the page).
- Grayscale, RGBA and 16-bit images are converted to 8-bit RGB rather than rejected: screening
  archives mix all of them, and the model only needs 8-bit colour. A 16-bit file holding 10-, 12-
  or 14-bit values is scaled by its real depth, not by 16 bits.
- A file that cannot be read says why (missing, permission denied, not an image, too large).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from drgrade.errors import OptionError

#: File suffixes a folder of fundus photographs may hold (matched case-insensitively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
#: Most pixels an image may claim (no fundus camera comes near): refused from the header.
MAX_PIXELS = 40_000_000
#: The shortest side, and the most elongation (long side over short), of an image drgrade
#: decodes: a 1 x 40000 strip is a 372-byte PNG whose square padding would need 4.8 GB.
MIN_DECODE_SIDE, MAX_ASPECT = 16, 4.0
#: OpenCV's reduced-scale JPEG decodes by factor.
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
#: EXIF orientation -> (number of 90-degree counter-clockwise turns, mirror left-right first).
_ORIENTATION = {
    2: (0, True),
    3: (2, False),
    4: (2, True),
    5: (1, True),
    6: (3, False),
    7: (3, True),
    8: (1, False),
}


class ImageReadError(RuntimeError):
    """An image file that is missing, unreadable or does not decode; the message names it and why."""


@dataclass(frozen=True)
class Header:
    """What an image file says about itself before it is decoded."""

    width: int
    height: int
    format: str
    orientation: int


def list_images(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under ``folder`` (recursively, sorted) and the entries skipped, with why.

    The one folder listing of drgrade (predict, explain, the runner): nothing is dropped silently.
    An image-suffixed entry that is not a readable file, a sub-folder that cannot be listed and a
    file of a type drgrade does not read each get a reason (hidden files are left alone).

    Args:
        folder: the folder to list.

    Raises:
        OptionError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OptionError(f"{folder} is not a folder of images")
    found, skipped = [], []

    def unreadable(error: OSError) -> None:
        skipped.append((Path(error.filename), f"{error.strerror.lower()}: its files were not listed"))

    for top, folders, files in os.walk(folder, onerror=unreadable):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            path = Path(top) / name
            if name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((path, f"not an image type drgrade reads ({', '.join(IMAGE_SUFFIXES)})"))
            elif path.is_file():
                found.append(path)
            else:
                skipped.append((path, not_a_file(path)))
    return sorted(found), sorted(skipped)


def not_a_file(path: Path) -> str:
    """What an entry that is not a regular file is: a dangling link, a link to something else, or neither."""
    if not path.is_symlink():
        return "not a regular file"
    if not path.exists():
        return "dangling symbolic link"
    return f"a symbolic link to {os.path.realpath(path)}, which is not a regular file"


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, or ``ImageReadError`` saying why they cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: a folder, not an image file") from None
    except OSError as error:
        raise ImageReadError(f"{path}: could not be read ({error.strerror})") from None


def read_header(data: bytes, path: str | Path) -> Header:
    """Width, height, format and EXIF orientation from the file's header (nothing decoded).

    PIL's own decompression-bomb limit is lifted while the header is read: only the header is
    read, and drgrade's limit (``MAX_PIXELS``) is applied to the size it gives, with a message
    naming that size.
    """
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            oriented = image.format in ("JPEG", "TIFF", "WEBP")
            orientation = int(image.getexif().get(0x0112, 1)) if oriented else 1
            return Header(width, height, image.format or "", orientation)
    except Exception as error:  # PIL raises many types for files that are not images
        raise ImageReadError(f"{path}: not a decodable image ({type(error).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def shape_problem(width: int, height: int) -> str | None:
    """Why an image of this size is no photograph to grade (judged from its header), or None."""
    if min(width, height) < MIN_DECODE_SIDE:
        return f"too small to grade ({width}x{height})"
    if max(width, height) > MAX_ASPECT * min(width, height):
        return f"not shaped like a photograph ({width}x{height}: over {MAX_ASPECT:g} times longer than wide)"
    return None


def reduction(header: Header, target: int | None) -> int:
    """The JPEG decode scale (1, 2, 4 or 8) keeping the shorter side at least ``target`` pixels."""
    if target is None or header.format != "JPEG":
        return 1
    shorter = min(header.width, header.height)
    return max([1, *(f for f in _REDUCED if shorter // f >= target)])


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to decoded pixels."""
    turns, mirror = _ORIENTATION.get(orientation, (0, False))
    image = image[:, ::-1] if mirror else image
    return np.ascontiguousarray(np.rot90(image, turns))


def significant_bits(image: np.ndarray) -> int:
    """How many of a 16-bit image's bits carry data: 10, 12, 14 or 16.

    Cameras and converters store 10-, 12- and 14-bit sensor values in 16-bit PNG and TIFF files
    without scaling them up; taking the top 8 of 16 bits would turn a well-exposed 12-bit
    photograph into a nearly black one. The brightest value tells the container's real depth.
    """
    used = int(image.max()).bit_length()
    return next(bits for bits in (10, 12, 14, 16) if used <= bits)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """OpenCV's decoded pixels (BGR, BGRA or grey; 8 or 16 bits) as 8-bit RGB (see ``significant_bits``)."""
    if image.dtype == np.uint16:
        image = (image >> (significant_bits(image) - 8)).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode(
    data: bytes,
    path: str | Path,
    target: int | None = None,
    max_pixels: int = MAX_PIXELS,
    header: Header | None = None,
) -> np.ndarray:
    """Decode ``data`` to HxWx3 uint8 RGB, upright, at reduced scale where ``target`` allows.

    Args:
        data: the file's bytes.
        path: the file, for messages.
        target: the shorter side the caller needs (a JPEG may be decoded down to it); None: full size.
        max_pixels: refuse images whose header claims more pixels than this, before decoding.
        header: the file's header when the caller has read it already (it is not read twice).
    """
    header = header or read_header(data, path)
    if header.width * header.height > max_pixels:
        raise ImageReadError(
            f"{path}: too large ({header.width}x{header.height}: over {max_pixels:,} pixels); "
            "not decoded, as no fundus camera writes images this size"
        )
    problem = shape_problem(header.width, header.height)
    if problem:
        raise ImageReadError(f"{path}: {problem}; not decoded")
    factor = reduction(header, target)
    flags = (_REDUCED[factor] if factor > 1 else cv2.IMREAD_UNCHANGED) | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return orient(to_rgb8(image), header.orientation)


def read_rgb(path: str | Path, target: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as an upright ``HxWx3`` uint8 RGB array (see ``decode``)."""
    return decode(read_bytes(path), path, target, max_pixels)


def write_rgb(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB uint8 array; the suffix of ``path`` picks the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageReadError(f"{path}: could not be encoded as {path.suffix}")
    path.write_bytes(encoded.tobytes())
