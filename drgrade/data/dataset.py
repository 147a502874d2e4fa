"""Torch datasets over records: labelled splits, a folder to predict, images with lesion masks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from drgrade.data.images import IMAGE_SUFFIXES, ImageReadError, list_images, read_rgb
from drgrade.data.intake import Facts, IntakeCache, judge
from drgrade.data.preprocess import crop_fundus, fundus_box, resize_square
from drgrade.data.quality import QualityLimits, UngradableImage
from drgrade.data.sources import UNKNOWN, Record
from drgrade.errors import OptionError
from drgrade.exams import exam_ids

Transform = Callable[[np.ndarray, int], torch.Tensor]
#: Joins a sample's exam parts (patient, eye, study date) into one collatable string.
EXAM_SEPARATOR = "\x1f"


def load_mask(record: Record, image: np.ndarray, size: int) -> np.ndarray:
    """The record's lesion mask cropped and resized exactly like ``image`` (zeros when it has none).

    Args:
        record: the image's record (its ``masks``, one per lesion type, are united; none gives zeros).
        image: the raw image the mask belongs to (its fundus box crops the mask).
        size: output side in pixels.
    """
    union = np.zeros(image.shape[:2], np.uint8)
    for path in record.masks:
        raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if raw is None or raw.shape != image.shape[:2]:
            raise ImageReadError(f"{path}: lesion mask unreadable or not the size of {record.path}")
        union = np.maximum(union, (raw > 0).astype(np.uint8) * 255)
    return resize_square(crop_fundus(union, fundus_box(image)), size, cv2.INTER_NEAREST)


class FundusDataset(Dataset):
    """Records -> ``{"image", "label", "index", "error", "exam", "digest", "dme"}`` samples (+ ``"mask"``).

    ``exam`` is what a DICOM header says of the photograph (PatientID, eye, study date), joined by
    ``EXAM_SEPARATOR`` so that batches collate it as one string (empty parts for other files);
    ``digest`` is the content digest of the file (empty when it could not be read).

    Args:
        records: the images.
        image_size: network input side.
        transform: augmentation or evaluation transform.
        keep_errors: an unreadable image yields a zero image and the error message instead of
            raising, so prediction over a folder grades the readable files and reports the rest.
        intake: where each file's one intake (crop, gate measurements) is stored; default: memory only.
        with_masks: also yield each record's lesion mask, preprocessed like its image.
        quality: pass every image through the quality gate with these limits (an ungradable
            image is an error, kept as the sample's message with ``keep_errors``).
        quality_model: a learned gate (``drgrade.tasks.quality.QualityModel``) the photographs
            the rule gate passes must pass too.
    """

    def __init__(
        self,
        records: Sequence[Record],
        image_size: int,
        transform: Transform,
        keep_errors: bool = False,
        intake: IntakeCache | None = None,
        with_masks: bool = False,
        quality: QualityLimits | None = None,
        quality_model=None,
    ):
        self.records = list(records)
        # each image's patient as a small integer, so evaluation can keep fellow eyes together
        self.groups = np.unique([r.patient_id for r in self.records], return_inverse=True)[1].tolist()
        self.image_size = image_size
        self.transform = transform
        self.keep_errors = keep_errors
        self.intake = intake or IntakeCache(None, image_size)
        self.with_masks = with_masks
        self.quality = quality
        self.quality_model = quality_model

    def __len__(self) -> int:
        return len(self.records)

    def checked(self, record: Record, image: np.ndarray | None, facts: Facts) -> np.ndarray | None:
        """The record's lesion mask (None without masks), once its photograph is known gradable.

        With ``quality``, an image the gate (or the learned ``quality_model``) refuses raises
        ``UngradableImage`` with the reason.

        Args:
            record: the image's record.
            image: its network-size fundus crop from the file's one intake (None: not decoded).
            facts: what that intake established.
        """
        reason = judge(facts, self.quality) if self.quality is not None else facts.error
        if not reason and image is not None and self.quality_model is not None:
            reason = self.quality_model.verdict(image)
        if reason or image is None:
            raise UngradableImage(reason or "not decodable", facts.features())
        return load_mask(record, read_rgb(record.path), self.image_size) if self.with_masks else None

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, list[float]]:
        """The network-size fundus crop of record ``index``, its lesion mask, the gate's features.

        Raises ``UngradableImage`` (with ``quality``) or ``ImageReadError`` for an image not graded.

        Args:
            index: the record's position.
        """
        record = self.records[index]
        image, facts = self.intake.get(record.path)
        return image, self.checked(record, image, facts), facts.features()

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        error = ""
        size = self.image_size
        image, facts = self.intake.get(record.path)  # the file's one intake: stored, or taken in now
        try:
            mask = self.checked(record, image, facts)
        except ImageReadError as exc:
            if not self.keep_errors:
                raise ImageReadError(f"{record.path}: {exc}") from None
            error = str(exc)
            image, mask = np.zeros((size, size, 3), np.uint8), np.zeros((size, size), np.uint8)
        sample = {
            "image": self.transform(image, record.grade),
            "label": record.grade,
            "index": index,
            "group": self.groups[index],
            "error": error,
            "exam": EXAM_SEPARATOR.join((facts.patient_id, facts.eye, facts.study_date)),
            "digest": facts.digest,
            "dme": record.dme,  # 1 / 0, or UNKNOWN where the source grades no macular edema
        }
        if self.with_masks:
            sample["mask"] = torch.from_numpy(mask > 0)
        if self.quality is not None:  # what the gate measured, NaN where it could not measure
            sample["quality"] = torch.tensor(facts.features(), dtype=torch.float32)
        return sample


def folder_records(
    folder: str | Path, manifest: str | Path | None = None, pattern: str | None = None
) -> tuple[list[Record], list[tuple[Path, str]]]:
    """Every image under ``folder`` as an unlabelled record, and the entries skipped with why.

    Args:
        folder: the folder to grade.
        manifest: an exam manifest (``file,patient_id,eye,field``) naming each file's patient and eye.
        pattern: or a file-name pattern with groups ``patient`` and ``eye`` (``drgrade.exams``).
    """
    paths, skipped = list_images(folder)
    if not paths and not skipped:
        raise OptionError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    records = []
    for path, ids in zip(paths, exam_ids(paths, manifest, pattern), strict=True):
        if ids is None:  # its own patient
            records.append(Record(path, UNKNOWN, "", str(path)))
        else:
            records.append(Record(path, UNKNOWN, "", ids.patient_id, eye=ids.eye, field=ids.field))
    return records, skipped
