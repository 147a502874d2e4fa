"""Writing results files safely: atomically, with the user's permissions, and no spreadsheet formulas.

- Atomic: a results file is either the old one or the complete new one, never torn. The
  temporary file lives beside its target (same folder, same filesystem), so the final rename is
  atomic and a killed process leaves no orphan in ``$TMPDIR``.
- Permissions: ``mkstemp`` creates files readable by their owner only; the finished file gets the
  mode any other new file of the user would (``0666`` less the umask).
- CSV injection: a cell starting with ``= + - @`` (or a tab or carriage return) is run as a formula
  by spreadsheet programs; such cells are prefixed with a single quote, and ``restore`` undoes that
  when drgrade reads its own files. File names that are not valid UTF-8 are written losslessly
  (``surrogateescape``: the original bytes).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: Characters that make a spreadsheet cell a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def user_file_mode() -> int:
    """The mode a new file of this user gets: 0666 less the process's umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:  # reading it changes nothing
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(current)
    return 0o666 & ~current


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    Args:
        path: the file to (re)write.
        mode: ``"w"`` for text or ``"wb"`` for bytes.
        **kwargs: passed to ``open`` (``newline``, ``encoding``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, user_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def save_figure(figure, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (the format follows the suffix of ``path``)."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        figure.savefig(f, dpi=dpi, format=path.suffix.lstrip("."))
    return path


def neutralise(cell: object) -> object:
    """A CSV cell a spreadsheet cannot run: text starting with a formula character gets a leading quote."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) and not _NUMBER.match(cell):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The text ``neutralise`` was given, from the cell it wrote."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell
