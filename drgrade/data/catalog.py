"""Every native source by name, and ``load_sources``: the configured sources merged into one list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from drgrade.data.public_sources import LESION_IMAGES, read_ddr, read_eyepacs, read_idrid
from drgrade.data.sources import Record, read_aptos, read_csv_source, read_messidor
from drgrade.errors import DataValidationError

#: Native source name -> its reader.
READERS: dict[str, Callable[..., list[Record]]] = {
    "aptos2019": read_aptos,
    "messidor2": read_messidor,
    "eyepacs": read_eyepacs,
    "idrid": read_idrid,
    "ddr": read_ddr,
}
#: Native source name -> the stem of its ``data.<stem>_root`` option.
ROOT_OPTIONS = {
    "aptos2019": "aptos",
    "messidor2": "messidor",
    "eyepacs": "eyepacs",
    "idrid": "idrid",
    "ddr": "ddr",
}


def load_sources(
    roots: dict[str, str | Path | None],
    csv_sources: Iterable[str | Path] = (),
    verify_images: bool = True,
) -> list[Record]:
    """All configured sources merged; problems from every source are reported together.

    Args:
        roots: root folder per native source name (see ``READERS``); None leaves a source out.
        csv_sources: generic ``path,grade[,patient_id]`` CSVs.
        verify_images: check that every image decodes.
    """
    readers = [(READERS[name], root) for name, root in roots.items() if root is not None]
    readers.extend((read_csv_source, path) for path in csv_sources)
    if not readers:
        options = ", ".join(f"data.{stem}_root" for stem in ROOT_OPTIONS.values())
        raise DataValidationError([f"no data source configured: set one of {options} or data.csv_sources"])
    records: list[Record] = []
    problems: list[str] = []
    for reader, location in readers:
        try:
            records.extend(reader(location, verify_images=verify_images))
        except DataValidationError as error:
            problems.extend(error.problems)
    if problems:
        raise DataValidationError(problems)
    return records


def lesion_images(roots: dict[str, str | Path | None]) -> list[Record]:
    """The configured sources' own lesion-segmentation images (IDRiD, DDR), grade unknown.

    Args:
        roots: root folder per native source name.
    """
    return [
        r
        for name, root in roots.items()
        if root is not None and name in LESION_IMAGES
        for r in LESION_IMAGES[name](root)
    ]
