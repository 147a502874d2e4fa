"""Torch datasets over records (labelled) and over a folder of images (prediction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from drgrade.data.cache import PreprocessCache
from drgrade.data.images import IMAGE_SUFFIXES, ImageReadError, read_rgb
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.sources import Record

Transform = Callable[[np.ndarray, int], torch.Tensor]
#: Label of an image whose grade is unknown (prediction on an unlabelled folder).
UNKNOWN = -1


class FundusDataset(Dataset):
    """Records -> ``{"image", "label", "index", "error"}`` samples.

    With ``keep_errors`` an unreadable image yields a zero image and the error message instead of
    raising, so prediction over a folder grades the readable files and reports the rest.
    """

    def __init__(
        self,
        records: Sequence[Record],
        image_size: int,
        transform: Transform,
        keep_errors: bool = False,
        cache: PreprocessCache | None = None,
    ):
        self.records = list(records)
        self.image_size = image_size
        self.transform = transform
        self.keep_errors = keep_errors
        self.cache = cache

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> np.ndarray:
        """The preprocessed (cropped, resized) RGB image of record ``index``."""
        path = self.records[index].path
        if self.cache is not None:
            return self.cache.load(path)
        return preprocess_fundus(read_rgb(path), self.image_size)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        error = ""
        try:
            image = self.load(index)
        except ImageReadError as exc:
            if not self.keep_errors:
                raise
            error = str(exc)
            image = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        return {
            "image": self.transform(image, record.grade),
            "label": record.grade,
            "index": index,
            "error": error,
        }


def folder_records(folder: str | Path) -> list[Record]:
    """Every image file under ``folder`` (recursively) as an unlabelled record, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"predict_dir {folder} is not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"predict_dir {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return [Record(p, UNKNOWN, "predict", str(p)) for p in paths]
