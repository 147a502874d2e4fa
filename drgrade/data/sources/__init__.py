"""Every dataset drgrade reads, one module each, registered here (the one place the rest reads).

Each module (``aptos``, ``messidor2``, ``eyepacs``, ``idrid``, ``ddr``, ``deepdrid``, ``eyeq``) declares
a ``Source``: its reader of the published download, its published layout written with synthetic photographs
(``drgrade synth --layout``), its download help and its lesion-segmentation images; ``csv`` reads
your own ``path,grade[,patient_id]`` sheets. The datamodule, ``reproduce`` and ``synth`` take
everything from ``SOURCES``, so adding a dataset is adding a module and a line here.

Synthetic folders carry a marker file (``.drgrade-synthetic``): written first, completed last, so
an interrupted ``synth`` leaves a folder that the next run (or ``make demo``) replaces, while a
folder without the marker (perhaps a real download) is never overwritten without ``--force``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from drgrade.data.sources import aptos, ddr, deepdrid, eyepacs, eyeq, idrid, messidor2
from drgrade.data.sources import csv as csv_source
from drgrade.data.sources.common import MASK_DIR, UNKNOWN, Exclusion, Record, Source, SourceData
from drgrade.errors import DataValidationError, OptionError

__all__ = ["MASK_DIR", "NAMES_PATIENTS", "SOURCES", "UNKNOWN", "Exclusion", "Record", "Source", "SourceData"]

#: Every native source by name, in the order reports list them.
SOURCES: dict[str, Source] = {
    m.SOURCE.name: m.SOURCE for m in (aptos, messidor2, eyepacs, idrid, ddr, deepdrid, eyeq)
}
#: Whether each native source names patients (else each image is its own bootstrap unit).
NAMES_PATIENTS: dict[str, bool] = {name: source.patients for name, source in SOURCES.items()}
#: ``synth --layout`` names (the folder names, with ``aptos`` for APTOS 2019).
LAYOUTS: dict[str, Source] = {("aptos" if s.name == "aptos2019" else s.name): s for s in SOURCES.values()}
#: The file marking a folder as drgrade's synthetic data (and whether its writing finished).
SYNTHETIC_MARK = ".drgrade-synthetic"


def load_sources(
    roots: dict[str, str | Path | None], csv_sources: Iterable[str | Path] = (), verify_images: bool = True
) -> SourceData:
    """All configured sources merged; problems from every source are reported together.

    Args:
        roots: root folder per source name (see ``SOURCES``); None leaves a source out.
        csv_sources: generic ``path,grade[,patient_id]`` CSVs.
        verify_images: check that every image decodes.
    """
    readers = [(SOURCES[name].read, root) for name, root in roots.items() if root is not None]
    readers.extend((csv_source.read, path) for path in csv_sources)
    if not readers:
        options = ", ".join(f"data.{s.option}" for s in SOURCES.values())
        raise DataValidationError([f"no data source configured: set one of {options} or data.csv_sources"])
    merged = SourceData([])
    problems: list[str] = []
    for read, location in readers:
        try:
            found = read(location, verify_images)
        except DataValidationError as error:
            problems.extend(error.problems)
            continue
        merged.records.extend(found.records)
        merged.excluded.extend(found.excluded)
    if problems:
        raise DataValidationError(problems)
    return merged


def lesion_images(roots: dict[str, str | Path | None]) -> list[Record]:
    """The configured sources' own lesion-segmentation images (IDRiD, DDR), grade unknown."""
    return [
        record
        for name, root in roots.items()
        if root is not None and SOURCES[name].lesion_images is not None
        for record in SOURCES[name].lesion_images(root)
    ]


def downloaded(data: Path) -> dict[str, Path]:
    """The sources whose download is under ``data``: in its folder, or one it unpacks to, with its marker."""
    found = {}
    for name, source in SOURCES.items():
        folder = next(
            (data / f for f in (source.folder, *source.aliases) if (data / f / source.marker).exists()), None
        )
        if folder is not None:
            found[name] = folder
    return found


def download_help(data: Path) -> str:
    """Where to get every source and where to put it under ``data``."""
    listed = "\n  ".join(source.download.format(data=data) for source in SOURCES.values())
    return (
        f"No real data found under {data}. To reproduce Table 3 (APTOS 2019 and Messidor-2), download:\n"
        f"  {listed}\n"
        f"Then run the same command again (`drgrade reproduce --data {data}`; in a checkout, `make "
        f"reproduce-table3 DATA={data}`). Any one dataset alone also works.\n"
        "To see the protocol run now on synthetic data: the same command with --demo in place of --data."
    )


def _mark(folder: Path, complete: bool, **settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SYNTHETIC_MARK).write_text(json.dumps({"complete": complete, **settings}))


def synthetic_state(folder: Path) -> str:
    """``complete`` or ``incomplete`` for drgrade's synthetic folders, ``absent`` or ``foreign`` otherwise."""
    mark = folder / SYNTHETIC_MARK
    if mark.is_file():
        try:
            return "complete" if json.loads(mark.read_text()).get("complete") else "incomplete"
        except (ValueError, AttributeError):
            return "incomplete"
    return "foreign" if folder.is_dir() and any(folder.iterdir()) else "absent"


def refuse_occupied(folders: Sequence[Path], force: bool) -> None:
    """Raise ``FileExistsError`` naming the non-empty folders that are not drgrade's synthetic data."""
    occupied = [d for d in folders if synthetic_state(d) == "foreign"]
    if occupied and not force:
        raise OptionError(
            f"{', '.join(map(str, occupied))} not empty and not drgrade's synthetic data: writing there "
            "would overwrite what is there (perhaps a real download). Choose another --out, or pass --force."
        )


def write_layouts(
    out: str | Path, counts: dict[str, int], size: int, seed: int, force: bool = False
) -> list[Path]:
    """Write each named layout (``LAYOUTS`` names -> image count) under ``out``, replacing synthetic ones.

    Args:
        out: the parent folder.
        counts: images per layout.
        size: image height in pixels.
        seed: generator seed (same seed, same bytes).
        force: overwrite non-empty folders that are not drgrade's synthetic data.
    """
    out = Path(out)
    unknown = sorted(set(counts) - set(LAYOUTS))
    if unknown:
        raise OptionError(f"unknown layout(s) {unknown}; choose from {sorted(LAYOUTS)}")
    folders = {name: out / LAYOUTS[name].folder for name in counts}
    refuse_occupied(list(folders.values()), force)
    written = []
    for name, num in counts.items():
        if folders[name].exists():
            shutil.rmtree(folders[name])  # a synthetic folder (or, with --force, whatever was there)
        _mark(folders[name], False, num=num, size=size, seed=seed)
        written.append(LAYOUTS[name].write_synthetic(out, num, size, seed))
        _mark(folders[name], True, num=num, size=size, seed=seed)
    return written


def write_synthetic(
    out: str | Path,
    num_aptos: int = 600,
    num_messidor: int = 300,
    image_size: int = 384,
    seed: int = 0,
    force: bool = False,
) -> list[Path]:
    """The demo default: APTOS 2019 and Messidor-2 under ``out``; returns their roots."""
    if min(num_aptos, num_messidor) < 5:
        raise OptionError("need at least 5 images per dataset (one per grade)")
    return write_layouts(out, {"aptos": num_aptos, "messidor2": num_messidor}, image_size, seed, force)


def ensure_synthetic(
    roots: Sequence[str | Path], counts: tuple[int, int], image_size: int, seed: int
) -> None:
    """Write the synthetic default into the parent of ``roots`` unless a complete copy is there.

    The demo generates on first use (and completes an interrupted generation); real-data
    configs never call this.

    Args:
        roots: the configured APTOS / Messidor-2 roots (one parent folder).
        counts: images per dataset (APTOS, Messidor-2).
        image_size: generated image height in pixels.
        seed: generator seed.
    """
    roots = [Path(r) for r in roots]
    if all(synthetic_state(r) in ("complete", "foreign") for r in roots):
        return  # complete synthetic data, or data of the user's own there: nothing to write
    problem = synthetic_problem(roots)
    if problem:
        raise OptionError(problem)
    write_synthetic(roots[0].parent, counts[0], counts[1], image_size, seed)


def synthetic_problem(roots: Sequence[str | Path]) -> str | None:
    """Why the synthetic default cannot be written for ``roots`` (None: it can, or need not be).

    It is written as one folder holding both datasets, so their roots must share a parent.
    """
    roots = [Path(r) for r in roots]
    if (
        all(synthetic_state(r) in ("complete", "foreign") for r in roots)
        or len({r.parent for r in roots}) <= 1
    ):
        return None
    shown = ", ".join(str(r) for r in roots)
    return (
        f"synthesize_if_missing writes the synthetic default as one folder holding both datasets, but "
        f"roots.aptos2019 and roots.messidor2 ({shown}) are in different folders: give both under one "
        "folder, or pass --data.synthesize_if_missing false for data of your own"
    )
