"""Readers for datasets in their native download layouts, producing one list of ``Record``.

Each reader checks everything it can before training starts and reports *all* problems it finds
at once (file, row, what is wrong), so a user fixes a broken download in one pass.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from drgrade.data.images import IMAGE_SUFFIXES
from drgrade.errors import DataValidationError
from drgrade.grades import check_grade

log = logging.getLogger(__name__)

APTOS_CSV = "train.csv"
APTOS_IMAGES = "train_images"
MESSIDOR_CSV = "messidor_data.csv"
MESSIDOR_PAIRS = "messidor-2.csv"
MESSIDOR_IMAGE_DIRS = ("IMAGES", "images", "Images", ".")


#: Where a source keeps lesion masks, when it has them: ``<root>/lesion_masks/<image stem>.png``
#: (non-zero pixels are lesions), aligned with the image.
MASK_DIR = "lesion_masks"


@dataclass(frozen=True)
class Record:
    """One labelled image.

    ``patient_id`` groups images that must share a split; ``masks`` are its lesion masks when the
    source has them (one file per lesion type or one for all; explain scores attention against
    their union); ``official_split`` is the dataset's published split (``train``, ``val``,
    ``test``) when it has one, used by ``data.split: official``.
    """

    path: Path
    grade: int
    source: str
    patient_id: str
    masks: tuple[Path, ...] = ()
    official_split: str = ""


def source_root(root: str | Path, name: str) -> Path:
    """``root`` as a Path, or a ``DataValidationError`` naming the dataset whose folder is missing."""
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError([f"{root}: {name} root folder not found"])
    return root


def read_csv_rows(path: Path, required: Iterable[str], problems: list[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts (keys stripped), or [] after recording why it is unusable."""
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            problems.append(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}"
            )
            return []
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        problems.append(f"{path}: no data rows (only a header); is this the right file?")
    return rows


def first_sighting(
    key: str, label: str, line: int, where: str, seen: dict[str, int], problems: list[str]
) -> bool:
    """Note ``key``'s first row; False, with a problem naming both rows, when it repeats."""
    if key in seen:
        problems.append(f"{where}: duplicate {label} (first on row {seen[key]})")
        return False
    seen[key] = line
    return True


def parse_grade(value: str, where: str, problems: list[str]) -> int | None:
    """``value`` as a grade, or None after recording why it is not one."""
    try:
        return check_grade(value)
    except ValueError as error:
        problems.append(f"{where}: {error}")
        return None


def check_decodes(path: Path) -> str | None:
    """Why ``path`` is not a readable image, or None. Verifies the file without a full decode."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for broken files
        return f"{path}: image does not decode ({type(error).__name__}: {error})"
    return None


def finish_source(
    records: list[Record], problems: list[str], verify_images: bool, root: Path | None = None
) -> list[Record]:
    """Raise every problem at once, or return the records with the masks ``root`` holds."""
    if root is not None and (root / MASK_DIR).is_dir():
        masks = {p.stem: p for p in (root / MASK_DIR).iterdir()}
        records = [replace(r, masks=(masks[r.path.stem],) if r.path.stem in masks else ()) for r in records]
    if verify_images:
        problems.extend(p for r in records if (p := check_decodes(r.path)) is not None)
    if problems:
        raise DataValidationError(problems)
    return records


def read_aptos(root: str | Path, verify_images: bool = True) -> list[Record]:
    """APTOS 2019: ``train.csv`` (id_code, diagnosis) and ``train_images/<id_code>.png``.

    APTOS has no patient ids, so each image is its own group; a patient who contributed two
    images can therefore land in two splits, a known limitation of this dataset.
    """
    root = source_root(root, "APTOS 2019")
    problems: list[str] = []
    csv_path = root / APTOS_CSV
    records: list[Record] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(read_csv_rows(csv_path, ("id_code", "diagnosis"), problems), start=2):
        where = f"{csv_path} row {line}"
        image_id = row["id_code"]
        if not image_id:
            problems.append(f"{where}: empty id_code")
            continue
        if not first_sighting(image_id, f"id_code {image_id!r}", line, where, seen, problems):
            continue
        grade = parse_grade(row["diagnosis"], where, problems)
        if grade is None:
            continue
        path = root / APTOS_IMAGES / f"{image_id}.png"
        if not path.is_file():
            problems.append(f"{where}: no image {path} for id_code {image_id!r}")
            continue
        records.append(Record(path, grade, "aptos2019", f"aptos:{image_id}"))
    return finish_source(records, problems, verify_images, root)


def _messidor_image_dir(root: Path) -> Path:
    for name in MESSIDOR_IMAGE_DIRS:
        folder = root / name
        if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
    return root


def _messidor_exams(path: Path) -> dict[str, str]:
    """Lower-cased image name -> exam id from the exam-pairs sheet (one exam per row).

    The sheet is read leniently (``;`` or ``,`` separated, header optional) because its
    distributed form has varied; any cell that looks like an image name counts.
    """
    exams: dict[str, str] = {}
    if not path.is_file():
        log.warning("%s not found: each Messidor-2 image becomes its own patient group", path)
        return exams
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        cells = [c.strip() for c in line.replace(",", ";").split(";")]
        for cell in cells:
            if Path(cell).suffix.lower() in IMAGE_SUFFIXES:
                exams[cell.lower()] = f"messidor:exam{number}"
    return exams


def read_messidor(root: str | Path, verify_images: bool = True) -> list[Record]:
    """Messidor-2 with Krause et al.'s adjudicated grades (``messidor_data.csv``).

    Image names are matched case-insensitively (the sheet says ``.jpg`` where the download has
    ``.JPG``); ungradable images are excluded and counted; both eyes of an exam (from
    ``messidor-2.csv``) share one patient id so they never straddle splits.
    """
    root = source_root(root, "Messidor-2")
    problems: list[str] = []
    csv_path = root / MESSIDOR_CSV
    rows = read_csv_rows(csv_path, ("image_id", "adjudicated_dr_grade", "adjudicated_gradable"), problems)
    image_dir = _messidor_image_dir(root)
    files = {p.name.lower(): p for p in image_dir.iterdir() if p.is_file()}
    exams = _messidor_exams(root / MESSIDOR_PAIRS)
    records: list[Record] = []
    seen: dict[str, int] = {}
    ungradable = 0
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path} row {line}"
        image_id = row["image_id"]
        key = image_id.lower()
        if not image_id:
            problems.append(f"{where}: empty image_id")
            continue
        if not first_sighting(key, f"image_id {image_id!r}", line, where, seen, problems):
            continue
        if row["adjudicated_gradable"] in ("0", "0.0"):
            ungradable += 1
            continue
        grade = parse_grade(row["adjudicated_dr_grade"], where, problems)
        if grade is None:
            continue
        path = files.get(key)
        if path is None:
            problems.append(f"{where}: no image named {image_id!r} in {image_dir}")
            continue
        records.append(Record(path, grade, "messidor2", exams.get(key, f"messidor:{key}")))
    if ungradable:
        log.info("Messidor-2: excluded %d ungradable image(s) listed in %s", ungradable, csv_path)
    return finish_source(records, problems, verify_images, root)


def read_csv_source(csv_path: str | Path, verify_images: bool = True) -> list[Record]:
    """A generic source: a CSV with ``path,grade[,patient_id]``, paths relative to the CSV."""
    csv_path = Path(csv_path)
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    name = csv_path.stem
    for line, row in enumerate(read_csv_rows(csv_path, ("path", "grade"), problems), start=2):
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
    return finish_source(records, problems, verify_images)
