"""Split files: which image is in which split, as a CSV another user can pass back in.

``splits/<name>.csv`` has one row per image: ``image`` (its source, folder and file name, as
``drgrade.data.splits.image_key`` writes it, so the file works on another machine), ``source``
and ``split`` (``train``, ``val``, ``test`` or ``unused``: left out, e.g. the images a few-shot
draw did not pick). ``--data.split_file FILE`` reads one instead of splitting; a published
split is read the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from drgrade.data.sources import Record
from drgrade.data.sources.common import read_csv_rows
from drgrade.data.splits import SPLITS, image_key
from drgrade.errors import DataValidationError, OptionError
from drgrade.files import atomic_open

#: The split a split file gives an image it leaves out.
UNUSED = "unused"
COLUMNS = ("image", "source", "split")


def write_split_file(path: Path, records: Sequence[Record], splits: Sequence[str]) -> Path:
    """Write one row per image (sorted by image), creating the folder.

    Args:
        path: the CSV to write.
        records: the images.
        splits: each image's split (``train``, ``val``, ``test`` or ``unused``).
    """
    rows = sorted((image_key(r), r.source, s) for r, s in zip(records, splits, strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def read_split_file(path: str | Path, records: Sequence[Record]) -> list[str]:
    """Each record's split from the file at ``path``, in record order.

    Args:
        path: a split file.
        records: the images read (after the quality gate and the duplicate check).

    Raises:
        OptionError: the file is missing or lacks a column.
        DataValidationError: rows with an unknown split or a repeated image, or images read
            that the file does not list (each named).
    """
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"data.split_file {path}: no such file")
    problems: list[str] = []
    rows = read_csv_rows(path, ("image", "split"), problems)  # the one sheet reader: encodings, huge cells
    if not rows:
        raise OptionError(f"data.split_file: {'; '.join(problems)} (needs {COLUMNS})")
    listed: dict[str, str] = {}
    for row_number, row in rows:
        image, split = row["image"], row["split"]
        if split not in (*SPLITS, UNUSED):
            problems.append(f"{path} row {row_number}: split {split!r} is not one of {[*SPLITS, UNUSED]}")
        elif image in listed:
            problems.append(f"{path} row {row_number}: {image} is listed twice")
        listed[image] = split
    keys = [image_key(r) for r in records]
    absent = [
        f"{path}: no row for {key} ({r.path})"
        for key, r in zip(keys, records, strict=True)
        if key not in listed
    ]
    if problems or absent:
        raise DataValidationError(problems + absent)
    return [listed[key] for key in keys]
