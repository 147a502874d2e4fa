"""Preprocessing cache: decode, crop and resize each source image once, then read small arrays.

Real fundus photographs are large (APTOS up to ~3200x2100 PNG) and decoding them every epoch
starves a GPU. An entry is keyed by the source file's identity (resolved path, size, mtime) and
the preprocessing settings, so an edited file or a changed setting is re-cached rather than
served stale. Entries are written to a temporary file and renamed into place, so a reader never
sees a partial entry; an entry that still fails to load (a torn disk write, a copied-in corrupt
file) is rebuilt from the source.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from drgrade.data.images import read_rgb
from drgrade.data.preprocess import preprocess_fundus

#: Bump when preprocessing changes meaning, to invalidate every existing entry.
PREPROCESS_VERSION = 1
ENV_CACHE_DIR = "DRGRADE_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$DRGRADE_CACHE_DIR``, else ``~/.cache/drgrade/preprocessed`` (data folders may be read-only)."""
    return Path(os.environ.get(ENV_CACHE_DIR, Path.home() / ".cache" / "drgrade" / "preprocessed"))


class PreprocessCache:
    """Cropped, resized RGB arrays of source images, stored as ``.npy`` under ``root``."""

    def __init__(self, root: str | Path, size: int):
        self.root = Path(root).expanduser()
        self.size = size

    def key(self, source: Path) -> str:
        """The cache key: source identity (path, size, mtime) and preprocessing settings."""
        stat = source.stat()
        identity = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.size}|v{PREPROCESS_VERSION}"
        return hashlib.sha1(identity.encode()).hexdigest()

    def entry(self, source: Path) -> Path:
        """The cache file of ``source``."""
        key = self.key(source)
        return self.root / key[:2] / f"{key}.npy"

    def load(self, source: str | Path) -> np.ndarray:
        """The preprocessed image of ``source``, from the cache or built (and stored) now."""
        source = Path(source)
        entry = self.entry(source)
        if entry.is_file():
            try:
                image = np.load(entry, allow_pickle=False)
                if image.shape == (self.size, self.size, 3) and image.dtype == np.uint8:
                    return image
            except (ValueError, OSError, EOFError):
                pass  # torn or foreign entry: rebuilt below
        image = preprocess_fundus(read_rgb(source), self.size)
        self._store(entry, image)
        return image

    @staticmethod
    def _store(entry: Path, image: np.ndarray) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                np.save(f, image, allow_pickle=False)
            os.replace(temporary, entry)  # atomic on POSIX: readers see all or nothing
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class _CacheFiller(Dataset):
    """Loads each image through the cache (building its entry); yields only the index."""

    def __init__(self, paths: Sequence[Path], cache: PreprocessCache):
        self.paths, self.cache = list(paths), cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> int:
        self.cache.load(self.paths[index])
        return index


def fill_cache(paths: Sequence[Path], cache: PreprocessCache, workers: int | None = None) -> int:
    """Preprocess every image into the cache ahead of training; returns the number of images.

    Runs in ``workers`` processes (default: all cores) with a progress bar.

    Args:
        paths: the source images.
        cache: the cache to fill.
        workers: worker processes (0 runs in this process).

    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    loader = DataLoader(_CacheFiller(paths, cache), batch_size=None, num_workers=workers, shuffle=False)
    for _ in tqdm(loader, total=len(paths), desc=f"caching into {cache.root}"):
        pass
    return len(paths)
