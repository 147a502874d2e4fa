"""Atomic file writes: a results file is either the old one or the complete new one, never torn.

The temporary file lives beside its target (same folder, same filesystem), so the final rename
is atomic and a killed process leaves no orphan in ``$TMPDIR``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


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
