"""DICOM photographs: what clinic fundus cameras export, read like any other photograph.

Only photographs are graded: a file whose Modality is ``OP`` (ophthalmic photography) or ``XC``
(external-camera photography), or whose SOP class is one of the photographic storage classes, is
read; a CT, an MR or an OCT volume is refused naming its modality, and a DICOM without pixel data
(a structured report, a presentation state) is refused as such. Pixels come from pydicom with the
decoders its handlers offer (Pillow for JPEG baseline and JPEG 2000, pyjpegls for JPEG-LS, GDCM
for lossless JPEG: the ``[dicom]`` extra), converted to 8-bit RGB honouring the photometric
interpretation (``RGB``, ``YBR_FULL``, ``YBR_FULL_422``: pydicom converts to RGB; ``MONOCHROME1``
is inverted, ``MONOCHROME2`` kept) and the stored bit depth (a 12-bit photograph keeps its full
range instead of being read as a dark 16-bit one).

The exam a photograph belongs to travels with it: PatientID, the eye (Laterality, else
ImageLaterality) and the study date fill a prediction file's ``patient_id``, ``eye`` and
``study_date``.

Errors are ``DicomProblem`` carrying the reason alone; ``drgrade.data.images`` (the one decoder)
names the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: File suffixes of DICOM files (files without a suffix are recognised by their ``DICM`` preamble).
DICOM_SUFFIXES = (".dcm", ".dicom")
#: Modalities that are photographs of the eye or its surroundings.
PHOTOGRAPHY_MODALITIES = ("OP", "XC")
#: SOP classes of photographs: Ophthalmic Photography 8 / 16 bit, VL Photographic Image Storage.
PHOTOGRAPHY_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2",
    "1.2.840.10008.5.1.4.1.1.77.1.4",
)
EYES = {"R": "right", "L": "left"}
INSTALL = "pip install 'drgrade[dicom]'"


class DicomProblem(ValueError):
    """Why a DICOM file cannot be graded (the message is the reason, without the file name)."""


@dataclass(frozen=True)
class Exam:
    """Whose photograph it is: PatientID, ``right`` / ``left`` (empty when unknown), ISO study date."""

    patient_id: str = ""
    eye: str = ""
    study_date: str = ""


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` is a DICOM file (Part 10: a 128-byte preamble, then ``DICM``)."""
    return data[128:132] == b"DICM"


def has_dicom_preamble(path: Path) -> bool:
    """Whether the file at ``path`` starts like a DICOM file (for files without a suffix)."""
    try:
        with path.open("rb") as f:
            return is_dicom(f.read(132))
    except OSError:
        return False


def _dataset(data: bytes, pixels: bool):
    """The parsed dataset, checked to be a photograph (``DicomProblem`` otherwise)."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise DicomProblem(f"a DICOM file, and pydicom is not installed: {INSTALL}") from None
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError) as error:
        raise DicomProblem(f"not a readable DICOM file ({type(error).__name__})") from None
    modality = str(dataset.get("Modality", "") or "")
    sop_class = str(dataset.get("SOPClassUID", "") or "")
    if modality not in PHOTOGRAPHY_MODALITIES and sop_class not in PHOTOGRAPHY_CLASSES:
        kind = getattr(dataset.get("SOPClassUID"), "name", "") or "unknown SOP class"
        raise DicomProblem(
            f"DICOM of modality {modality or 'unstated'} ({kind}), not an ophthalmic photograph "
            f"(modality {' or '.join(PHOTOGRAPHY_MODALITIES)})"
        )
    return dataset


def read_exam(data: bytes) -> tuple[int, int, Exam]:
    """Width, height and exam of a DICOM photograph, from its header (no pixels decoded).

    Raises:
        DicomProblem: not readable, not a photograph, or no image size (no pixel data).
    """
    dataset = _dataset(data, pixels=False)
    if "Rows" not in dataset or "Columns" not in dataset:
        raise DicomProblem("DICOM without pixel data (no image to grade)")
    eye = str(dataset.get("Laterality", "") or dataset.get("ImageLaterality", "") or "").upper()
    date = str(dataset.get("StudyDate", "") or "")
    iso = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else ""
    exam = Exam(str(dataset.get("PatientID", "") or ""), EYES.get(eye, ""), iso)
    return int(dataset.Columns), int(dataset.Rows), exam


def read_pixels(data: bytes) -> np.ndarray:
    """A DICOM photograph's pixels as HxWx3 uint8 RGB.

    Raises:
        DicomProblem: not a photograph, no pixel data, several frames, or no decoder installed.
    """
    dataset = _dataset(data, pixels=True)
    if "PixelData" not in dataset:
        raise DicomProblem("DICOM without pixel data (no image to grade)")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DicomProblem(f"DICOM of {frames} frames; drgrade grades one photograph per file")
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in ("RGB", "YBR_FULL", "YBR_FULL_422", "MONOCHROME1", "MONOCHROME2"):
        raise DicomProblem(f"DICOM photometric interpretation {photometric or 'unstated'} is not read")
    from pydicom.pixels import pixel_array

    try:
        pixels = pixel_array(dataset, as_rgb=True)  # YBR_FULL(_422) -> RGB
    except (RuntimeError, NotImplementedError, ValueError) as error:
        first = str(error).splitlines()[0][:160]
        raise DicomProblem(f"DICOM pixel data not decodable ({first}); {INSTALL} adds the decoders") from None
    return to_rgb8(pixels, photometric, int(dataset.get("BitsStored", 8)), int(dataset.PixelRepresentation))


def to_rgb8(pixels: np.ndarray, photometric: str, bits: int, signed: int) -> np.ndarray:
    """Decoded DICOM pixels as 8-bit RGB: the stored bit depth scaled to 8 bits, MONOCHROME1 inverted.

    Args:
        pixels: HxW (monochrome) or HxWx3 (colour) integers.
        photometric: the photometric interpretation.
        bits: BitsStored (the significant bits of each sample).
        signed: PixelRepresentation (1: two's complement samples).
    """
    values = pixels.astype(np.int64)
    if signed:
        values = values + (1 << (bits - 1))  # -2^(b-1)..2^(b-1)-1 -> 0..2^b-1
    values = np.clip(values, 0, (1 << bits) - 1)
    if photometric == "MONOCHROME1":  # 0 is white
        values = (1 << bits) - 1 - values
    eight = (values >> (bits - 8) if bits > 8 else values << (8 - bits)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(eight[..., None], 3, axis=2) if eight.ndim == 2 else eight)
