"""Your own data: a CSV with ``path,grade[,patient_id]`` columns, paths relative to the CSV.

Listed with ``data.csv_sources``; the source name is the CSV's file stem. Lesion masks, when
present, are ``lesion_masks/<image stem>.png`` beside it.
"""

from __future__ import annotations

from pathlib import Path

import drgrade.data.sources.common as common
from drgrade.data.sources.common import Record, SourceData


def read(csv_path: str | Path, verify_images: bool = True) -> SourceData:
    """Every row with its image; each image its own patient unless ``patient_id`` says otherwise."""
    csv_path = Path(csv_path)
    problems: list[str] = []
    records: list[Record] = []
    name = csv_path.stem
    for where, relative, row in common.keyed_rows(csv_path, ("path", "grade"), "path", problems):
        path = csv_path.parent / relative
        grade = common.parse_grade(row["grade"], where, problems)
        if grade is None:
            continue
        if not path.is_file():
            problems.append(f"{where}: no image {path}")
            continue
        patient = row.get("patient_id") or relative
        records.append(Record(path, grade, name, f"{name}:{patient}"))
    return common.finish_source(records, problems, verify_images, csv_path.parent)
