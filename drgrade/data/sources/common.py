"""What every dataset module shares: the record types, the ``Source`` declaration and the row checks.

Each reader checks everything it can before training starts and reports *all* problems it finds
at once (file, row, what is wrong), so a user fixes a broken download in one pass; images the
dataset itself marks ungradable are returned as exclusions with the reason, never silently dropped.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from drgrade.data.dicom import has_dicom_preamble
from drgrade.data.images import ImageReadError, read_bytes, read_header
from drgrade.errors import DataValidationError
from drgrade.grades import check_grade

#: Where a source keeps lesion masks, when it has them: ``<root>/lesion_masks/<image stem>.png``
#: (non-zero pixels are lesions), aligned with the image.
MASK_DIR = "lesion_masks"
#: The grade of an image whose grade is not known (a folder to predict, a lesion-segmentation image).
UNKNOWN = -1


@dataclass(frozen=True)
class Record:
    """One labelled image.

    ``patient_id`` groups images that must share a split; ``eye`` (``left`` / ``right``) and
    ``field`` (which photograph of the eye) group them into exams where the dataset says; ``masks``
    are its lesion masks when the source has them (one file per lesion type or one for all;
    explain scores attention against their union); ``official_split`` is the dataset's published
    split (``train``, ``val``, ``test``) when it has one, used by ``data.split: official``;
    ``gradability`` is the dataset's own image-quality label where it has one (``GRADABILITY``),
    empty where it has none.
    """

    path: Path
    grade: int
    source: str
    patient_id: str
    masks: tuple[Path, ...] = ()
    official_split: str = ""
    eye: str = ""
    field: str = ""
    #: Diabetic macular edema: 1 / 0 where the dataset grades it (Messidor-2, IDRiD), else ``UNKNOWN``.
    dme: int = -1
    gradability: str = ""


#: The gradability labels datasets give: EyeQ's three levels, and a two-level label (Messidor-2's
#: ``adjudicated_gradable``, DDR's grade 5) whose ``gradable`` is EyeQ's good or usable.
GRADABILITY = ("good", "usable", "reject", "gradable")


@dataclass(frozen=True)
class Exclusion:
    """An image left out of training and evaluation, and why (listed in split.csv and on the console).

    ``kind`` is one of ``dataset`` (ungradable by the dataset's own labels), ``quality`` (refused by
    the quality gate), ``duplicate`` (the same photograph or patient as an image in a more
    held-out split: external test sources, published test parts) or ``split_file`` (marked
    unused by ``data.split_file``).
    """

    record: Record
    kind: str
    reason: str


@dataclass
class SourceData:
    """What a reader found: the usable records, and the images it excluded with why."""

    records: list[Record]
    excluded: list[Exclusion] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """A dataset as it is published: how to read it, where it goes, how to get it.

    Args:
        name: the source name in records, reports and ``data.test_sources`` (``aptos2019``).
        folder: its folder under a data directory (``reproduce --data``, ``synth --layout``).
        marker: a file or folder whose presence under ``folder`` means the download is there.
        read: ``read(root, verify_images) -> SourceData``.
        write_synthetic: ``write(out, num, size, seed) -> root``: its published layout, synthetic.
        download: how to obtain it (shown when ``reproduce`` finds no data); ``{data}`` is the folder.
        lesion_images: ``lesion_images(root) -> records`` of its pixel-annotated images, if any.
        patients: whether the published layout names patients (exam pairs, left/right eyes), so
            the bootstrap can draw patients; otherwise each image is its own unit.
        aliases: other folder names it is found under: the name its download unpacks to
            (Kaggle's ``aptos2019-blindness-detection/``).
    """

    name: str
    folder: str
    marker: str
    read: Callable[[Path, bool], SourceData]
    write_synthetic: Callable[[Path, int, int, int], Path]
    download: str
    lesion_images: Callable[[Path], list[Record]] | None = None
    patients: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The data option holding its root: ``roots.<name>`` (``--data.roots.aptos2019 DIR``)."""
        return f"roots.{self.name}"

    def configured_root(self, data: dict) -> str | None:
        """Its root in a parsed ``data`` section (None: not used)."""
        return (data.get("roots") or {}).get(self.name)


def gradability_labelled(found: SourceData) -> list[tuple[Record, str]]:
    """(photograph, human label) of every photograph its dataset labels for gradability.

    The graded records carry their label; the ones a dataset itself excludes as ungradable
    (``Exclusion`` of kind ``dataset``) are the human rejects.

    Args:
        found: what the sources' readers found.
    """
    labelled = [(r, r.gradability) for r in found.records if r.gradability in GRADABILITY]
    rejects = [e for e in found.excluded if e.kind == "dataset" and e.record.gradability]
    return labelled + [(e.record, e.record.gradability) for e in rejects]


def source_root(root: str | Path, name: str) -> Path:
    """``root`` as a Path, or a ``DataValidationError`` naming the dataset whose folder is missing."""
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError([f"{root}: {name} root folder not found"])
    return root


#: Largest dataset sheet read (EyePACS's biggest is about 1 MB).
MAX_SHEET_BYTES = 64 << 20
#: Byte-order marks a sheet may start with, and the text encodings they announce.
BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def read_sheet_text(path: Path, problems: list[str]) -> str | None:
    """A dataset sheet's text, or None after recording why it cannot be read.

    Sheets are UTF-8 (with or without a byte-order mark) or UTF-16 with its mark, as spreadsheet
    programs save them; anything else (a cp1252 export, say) is named with where decoding failed,
    rather than guessed.
    """
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None
    if path.stat().st_size > MAX_SHEET_BYTES:
        size = path.stat().st_size
        problems.append(f"{path}: {size:,} bytes, over the {MAX_SHEET_BYTES:,} a dataset sheet may have")
        return None
    data = path.read_bytes()
    encoding = next((name for mark, name in BOMS if data.startswith(mark)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        problems.append(
            f"{path} line {line}: not {encoding.upper()} text (byte {data[error.start]:#04x}); "
            'save the sheet as UTF-8 (a spreadsheet\'s "CSV UTF-8") and run again'
        )
        return None


def read_csv_rows(
    path: Path, required: Iterable[str], problems: list[str]
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV's data rows (keys stripped), or [] after recording why it is unusable.

    A row with more cells than the header is a problem (the cells would shift), not silently kept;
    a cell past the csv module's size limit ends the reading with the row named.
    """
    text = read_sheet_text(path, problems)
    if text is None:
        return []
    before = len(problems)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            found = ", ".join(columns)[:200] or "none"
            problems.append(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
            return []
        for line, row in enumerate(reader, start=2):
            if None in row:  # DictReader files surplus cells under the key None
                problems.append(
                    f"{path} row {line}: {len(columns) + len(row[None])} cells for {len(columns)} columns"
                )
                continue
            rows.append((line, {(k or "").strip(): (v or "").strip() for k, v in row.items()}))
    except csv.Error as error:
        problems.append(f"{path} line {reader.line_num + 1}: not a readable CSV row ({error})")
        return []
    if not rows and len(problems) == before:
        problems.append(f"{path}: no data rows (only a header); is this the right file?")
    return rows


def keyed_rows(
    path: Path,
    required: Iterable[str],
    key: str,
    problems: list[str],
    seen: dict[str, int] | None = None,
    fold: Callable[[str], str] = str,
    blank_ok: bool = False,
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, key, row) of each data row whose ``key`` cell is present and not seen before.

    An empty key (unless ``blank_ok``: IDRiD's sheets end in blank rows) or a repeated one is a
    problem naming the file and row (both rows for a repeat).

    Args:
        path: the CSV.
        required: its required columns.
        key: the column identifying an image.
        problems: where problems are collected.
        seen: keys already seen, shared across a dataset's sheets (default: this sheet's own).
        fold: how keys compare (``str.lower`` where the download's case differs from the sheet's).
        blank_ok: skip rows whose key is empty without a problem.
    """
    seen = {} if seen is None else seen
    for line, row in read_csv_rows(path, required, problems):
        where, value = f"{path} row {line}", row[key]
        if not value:
            if not blank_ok:
                problems.append(f"{where}: empty {key}")
            continue
        if fold(value) in seen:
            problems.append(f"{where}: duplicate {key} {value!r} (first on row {seen[fold(value)]})")
            continue
        seen[fold(value)] = line
        yield where, value, row


def parse_dme(value: str, where: str, problems: list[str], present_from: int = 1) -> int:
    """A DME cell as 1 / 0 (``UNKNOWN`` when empty or the column is absent); problems recorded.

    Args:
        value: the cell (an integer grade of macular edema).
        where: file and row, for the messages.
        problems: where problems are collected.
        present_from: the smallest value that counts as DME (IDRiD: 2, exudates within one disc
            diameter of the macula centre, Gulshan et al.'s definition of referable DME).
    """
    if value == "":
        return UNKNOWN
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number.is_integer() or number < 0:
        problems.append(f"{where}: macular edema {value!r} is not a non-negative integer")
        return UNKNOWN
    return int(number >= present_from)


def plain_name(value: str, where: str, problems: list[str]) -> bool:
    """Whether a sheet's image id is a bare file name; records a problem otherwise.

    An id is joined to the dataset's image folder, so ``../../x`` (or ``/etc/x``) would read a
    file outside the dataset.
    """
    if value in (".", "..") or "\\" in value or Path(value).name != value:
        problems.append(f"{where}: image id {value!r} is not a plain file name (it would leave its folder)")
        return False
    return True


def parse_grade(value: str, where: str, problems: list[str]) -> int | None:
    """``value`` as a grade, or None after recording why it is not one."""
    try:
        return check_grade(value)
    except ValueError as error:
        problems.append(f"{where}: {error}")
        return None


def grade_and_image(
    label: str, image: Path | None, missing: str, where: str, problems: list[str]
) -> int | None:
    """The row's grade when both it and its image are good; otherwise None, each problem recorded.

    Args:
        label: the grade cell.
        image: the row's image file, None when the download lacks it.
        missing: what to say when it does.
        where: file and row, for the messages.
        problems: where problems are collected.
    """
    grade = parse_grade(label, where, problems)
    if image is None:
        problems.append(f"{where}: {missing}")
    return None if image is None else grade


def files_in(folder: Path) -> dict[str, Path]:
    """Name -> path of a folder's files, from one directory scan (88,702 stat calls avoided)."""
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {entry.name: Path(entry.path) for entry in entries if entry.is_file()}


def check_decodes(path: Path) -> str | None:
    """Why ``path`` is not a readable image, or None. Verifies the file without a full decode."""
    if has_dicom_preamble(path):  # PIL does not read DICOM: its header is checked by drgrade's reader
        try:
            read_header(read_bytes(path), path)
        except ImageReadError as error:
            return f"{path}: image does not decode ({str(error).removeprefix(f'{path}: ')})"
        return None
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for broken files
        return f"{path}: image does not decode ({type(error).__name__}: {error})"
    return None


def finish_source(
    records: list[Record],
    problems: list[str],
    verify_images: bool,
    root: Path | None = None,
    excluded: list[Exclusion] | None = None,
) -> SourceData:
    """Raise every problem at once, or return the records (with the masks ``root`` holds) and exclusions."""
    if root is not None and (root / MASK_DIR).is_dir():
        masks = {p.stem: p for p in (root / MASK_DIR).iterdir()}
        records = [replace(r, masks=(masks[r.path.stem],) if r.path.stem in masks else ()) for r in records]
    if verify_images:
        problems.extend(p for r in records if (p := check_decodes(r.path)) is not None)
    if problems:
        raise DataValidationError(problems)
    return SourceData(records, excluded or [])
