"""Your own data: a CSV with ``path,grade[,patient_id]`` columns, paths relative to the CSV.

Listed with ``data.csv_sources``; the source name is the CSV's file stem. Lesion masks, when
present, are ``lesion_masks/<image stem>.png`` beside it.
"""

from __future__ import annotations

from pathlib import Path

from drgrade.data.sources.common import (
    Record,
    SourceData,
    finish_source,
    first_sighting,
    parse_grade,
    read_csv_rows,
)


def read(csv_path: str | Path, verify_images: bool = True) -> SourceData:
    """Every row with its image; each image its own patient unless ``patient_id`` says otherwise."""
    csv_path = Path(csv_path)
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    name = csv_path.stem
    for line, row in read_csv_rows(csv_path, ("path", "grade"), problems):
        where = f"{csv_path} row {line}"
        path = csv_path.parent / row["path"]
        if not first_sighting(row["path"], f"path {row['path']!r}", line, where, seen, problems):
            continue
        grade = parse_grade(row["grade"], where, problems)
        if grade is None:
            continue
        if not path.is_file():
            problems.append(f"{where}: no image {path}")
            continue
        patient = row.get("patient_id") or row["path"]
        records.append(Record(path, grade, name, f"{name}:{patient}"))
    return finish_source(records, problems, verify_images, csv_path.parent)
