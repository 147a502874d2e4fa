"""Writing results files safely: atomically, with the user's permissions, and no spreadsheet formulas.

- Atomic: a results file is either the old one or the complete new one, never torn. The
  temporary file lives beside its target (same folder, same filesystem), so the final rename is
  atomic and a killed process leaves no orphan in ``$TMPDIR``.
- Permissions: ``mkstemp`` creates files readable by their owner only; the finished file gets the
  mode any other new file of the user would (``0666`` less the umask).
- CSV injection: a cell starting with ``= + - @`` (or a tab or carriage return) is run as a formula
  by spreadsheet programs; such cells are prefixed with a single quote, control characters (an
  ESC in a file name) are written as their visible Unicode pictures, and ``restore`` undoes both
  when drgrade reads its own files. File names that are not valid UTF-8 are written losslessly
  (``surrogateescape``: the original bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from drgrade.errors import OutputError

#: How much larger than the file a zip archive (a checkpoint) may unpack: torch stores its tensors
#: uncompressed, so anything near this is a zip bomb, refused before a byte is inflated.
UNPACK_RATIO, UNPACK_SLACK = 2, 64 << 20
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
    refuse_special(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"cannot write {path} ({error.strerror})") from None
    try:
        with os.fdopen(handle, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, user_file_mode())
        refuse_special(path)  # nothing took its place meanwhile (a rename replaces whatever is there)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path} ({error.strerror}); nothing was left half-written") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def archive_problem(path: str | Path) -> str | None:
    """Why a zip archive (a torch checkpoint) must not be unpacked, or None: it inflates far past its size."""
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(entry.file_size for entry in archive.infolist())
    size = Path(path).stat().st_size
    if unpacked > UNPACK_RATIO * size + UNPACK_SLACK:
        return f"it would unpack to {unpacked:,} bytes from {size:,} (a zip bomb); not loaded"
    return None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def special_kind(path: str | Path) -> str | None:
    """What stands at ``path`` if it is not a regular file (a link, device, pipe, socket, folder), else None.

    ``os.lstat`` looks at the entry itself: a link is named as a link, whatever it points to.
    """
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (the folder check says the rest)
        return None
    except OSError as error:
        raise OutputError(f"cannot inspect {path} ({error.strerror})") from None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)})"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket or other special file"


def refuse_special(path: Path) -> None:
    """``OutputError`` when writing ``path`` would replace something that is not a regular file.

    Results are written by renaming a finished file over the target, and a rename replaces
    whatever entry is there: as root, ``--out /dev/null`` would turn the system's null device into
    a file. Only a missing target or a regular file is ever replaced.
    """
    kind = special_kind(path)
    if kind == "a folder":
        raise OutputError(
            f"{path} is a folder; pass a file name for the results (e.g. {path / 'predictions.csv'})"
        )
    if kind:
        raise OutputError(
            f"{path} is {kind}; drgrade writes results only to a new or regular file and never replaces "
            "anything else: choose another output file"
        )


def is_input(path: Path, source: Path) -> bool:
    """Whether ``path`` is the input ``source`` (the same file, links resolved) or a file inside it."""
    if not path.exists() or not source.exists():
        return False
    if source.is_dir():
        return path.resolve().is_relative_to(source.resolve())
    return os.path.samefile(path, source)


def check_writable(path: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse, before any work is done, an output file that cannot or must not be written (``OutputError``).

    Refused: a target that is not a regular file (a folder, link, device, pipe or socket), a
    target that is one of the command's ``inputs`` (the same file after resolving links, or an
    existing file inside an input folder: a photograph being graded), and a folder that cannot be
    created or written into.

    Args:
        path: the output file.
        inputs: the files and folders the command reads (None entries are ignored).
    """
    path = Path(path)
    refuse_special(path)
    for source in inputs:
        if source is not None and is_input(path, Path(source)):
            raise OutputError(
                f"{path} is one of this command's inputs ({source}); writing the results there would "
                "destroy it: choose another output file"
            )
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the folder {folder} for {path.name} ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {folder} (permission denied); choose another --out")
    return path


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


#: Control characters (C0 and DEL) and the visible Unicode "control pictures" written for them:
#: an ESC byte in a file name would otherwise reach a terminal showing the CSV.
_CONTROLS = {code: 0x2400 + code for code in range(32)} | {0x7F: 0x2421}
_PICTURES = {picture: code for code, picture in _CONTROLS.items()}


def neutralise(cell: object) -> object:
    """A CSV cell a spreadsheet cannot run and a terminal can show safely.

    Text starting with a formula character gets a leading quote (a lone character, the ``-`` of
    an undefined figure, is no formula); control characters become their visible pictures
    (ESC as U+241B). ``restore`` undoes both.
    """
    if not isinstance(cell, str):
        return cell
    formula = len(cell) > 1 and cell.startswith(FORMULA_STARTS) and not _NUMBER.match(cell)
    return ("'" + cell if formula else cell).translate(_CONTROLS)


def restore(cell: str) -> str:
    """The text ``neutralise`` was given, from the cell it wrote."""
    cell = cell.translate(_PICTURES)
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell
