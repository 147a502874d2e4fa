"""One decode per photograph, remembered: the gate's measurements, the hashes and the network input.

Reading an EyePACS-sized archive is the slow part of a run (about 70 ms of a core per 2000-px
photograph), so each file is decoded once and everything drgrade needs from it is computed in
that one pass (``take_in``): the quality gate's measurements (``quality.measure``), the content
digest and perceptual hash (duplicates), and the fundus crop at the network's input size. They
are stored together in the intake cache (``$DRGRADE_CACHE_DIR``, default
``~/.cache/drgrade/intake``), one ``.npz`` per file version and input size:

- keyed by the file's identity (resolved path, size, modification and change times, inode) and
  the settings, so an edited file is taken in again, even if its modification time was restored
  (its change time cannot be);
- checked on read by a checksum of the stored pixels (a damaged entry is recomputed, never served);
- written to a temporary file and renamed (a reader never sees half an entry); a full disk only
  turns the cache off for the rest of the run (with one warning), nothing fails.

``take_in_all`` runs the pass over many files in worker processes with a progress bar (``drgrade
cache`` ahead of time, or the first setup); later setups, every DDP rank and every epoch read the
stored results. A changed quality limit is re-judged from the stored measurements (``judge``)
without decoding anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drgrade.data.duplicates import difference_hash
from drgrade.data.images import MAX_PIXELS, ImageReadError, decode, read_bytes, read_header
from drgrade.data.preprocess import preprocess_fundus
from drgrade.data.quality import (
    ANALYSIS_SIZE,
    DEFAULT_LIMITS,
    FEATURES,
    QualityLimits,
    file_is_complete,
    measure,
    size_problem,
    verdict,
)

#: Bump when what an entry holds changes meaning, to retire every existing entry.
INTAKE_VERSION = 4
ENV_CACHE_DIR = "DRGRADE_CACHE_DIR"


@dataclass(frozen=True)
class Facts:
    """What one read of an image file established.

    ``error`` says why it could not be decoded (empty when it was); ``measured`` are the gate's
    measurements (None without a decode); ``digest`` is the BLAKE2b of the file's bytes and
    ``dhash`` the 256-bit difference hash of its fundus (hexadecimal).
    """

    error: str
    width: int = 0
    height: int = 0
    measured: dict[str, float] | None = None
    digest: str = ""
    dhash: str = ""

    def features(self) -> list[float]:
        """The gate's features in ``FEATURES`` order (NaN where not measured)."""
        measured = self.measured or {}
        return [measured.get(name, float("nan")) for name in FEATURES]

    def dhash_bits(self) -> np.ndarray | None:
        """The difference hash as 256 booleans (None for an undecoded file)."""
        if not self.dhash:
            return None
        return np.unpackbits(np.frombuffer(bytes.fromhex(self.dhash), np.uint8)).astype(bool)


def judge(facts: Facts, limits: QualityLimits = DEFAULT_LIMITS) -> str:
    """Why the file cannot be graded ("" when it can), from its facts alone (nothing is decoded)."""
    if facts.error:
        return facts.error
    problem = size_problem(facts.width, facts.height, limits)
    if problem is None and facts.measured is None:  # too large to decode at all
        problem = f"too large ({facts.width}x{facts.height}: over {MAX_PIXELS:,} pixels; not decoded)"
    problem = problem or verdict(facts.measured, limits)
    return f"ungradable: {problem}" if problem else ""


def decode_target(size: int) -> int:
    """The shorter side a photograph is decoded down to: twice the input size, at least the gate's."""
    return max(ANALYSIS_SIZE, 2 * size)


def take_in(path: str | Path, size: int, hashes: bool = True) -> tuple[np.ndarray | None, Facts]:
    """One read and one decode of ``path``: (network-size fundus crop or None, facts).

    Args:
        path: the image file.
        size: the network input side.
        hashes: also compute the content digest and perceptual hash (duplicate detection at
            setup; grading a folder needs neither).
    """
    try:
        data = read_bytes(path)
    except ImageReadError as error:
        return None, Facts(str(error).removeprefix(f"{path}: "))
    digest = hashlib.blake2b(data, digest_size=16).hexdigest() if hashes else ""
    try:
        header = read_header(data, path)
        if not file_is_complete(data):
            return None, Facts("ungradable: incomplete file (cut off before its end)", digest=digest)
        if header.width * header.height > MAX_PIXELS:
            return None, Facts("", header.width, header.height, None, digest)
        image = decode(data, path, decode_target(size), header=header)
    except ImageReadError as error:
        return None, Facts(str(error).removeprefix(f"{path}: "), digest=digest)
    crop = preprocess_fundus(image, size)
    bits = np.packbits(difference_hash(crop)).tobytes().hex() if hashes else ""  # from the crop
    facts = Facts("", header.width, header.height, measure(image), digest, bits)
    return crop, facts


def default_cache_dir() -> Path:
    """``$DRGRADE_CACHE_DIR``, else ``~/.cache/drgrade/intake`` (data folders may be read-only)."""
    return Path(os.environ.get(ENV_CACHE_DIR, Path.home() / ".cache" / "drgrade" / "intake"))


class IntakeCache:
    """The stored intake of image files at one network input size (``root`` None: in memory only).

    Args:
        root: the cache folder, or None to keep nothing on disk.
        size: the network input side the stored crops have.
    """

    def __init__(self, root: str | Path | None, size: int):
        self.root = None if root is None else Path(root).expanduser()
        #: The folder asked for (``root`` becomes None when a full disk turns storing off).
        self.requested_root = self.root
        self.size = size

    def entry(self, source: Path) -> Path:
        """The cache file of ``source`` (its identity, the input size and the intake version)."""
        stat = source.stat()
        identity = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"
        key = hashlib.sha1(
            f"{identity}|{self.size}|v{INTAKE_VERSION}".encode(errors="surrogateescape")
        ).hexdigest()
        return self.root / key[:2] / f"{key}.npz"

    def get(self, source: str | Path) -> tuple[np.ndarray | None, Facts]:
        """The source's (crop, facts): stored, or taken in now (and stored)."""
        source = Path(source)
        if self.root is None:
            return take_in(source, self.size)
        try:
            entry = self.entry(source)
        except OSError:
            return take_in(source, self.size)  # gone or unreadable: take_in says which
        stored = self._read(entry)
        if stored is not None:
            return stored
        image, facts = take_in(source, self.size)
        self._store(entry, image, facts)
        return image, facts

    def stored_facts(self, source: str | Path) -> Facts | None:
        """The source's stored facts, reading nothing else (None: not stored, or unreadable).

        What a setup needs (gate measurements, hashes) without the crop, so a second setup of
        an EyePACS-sized archive reads kilobytes per photograph; the crop's checksum is checked
        when the crop itself is read.
        """
        if self.root is None:
            return None
        try:
            with np.load(self.entry(Path(source)), allow_pickle=False) as stored:
                return Facts(**json.loads(str(stored["facts"]))["facts"])
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            return None

    def _read(self, entry: Path) -> tuple[np.ndarray | None, Facts] | None:
        """A stored entry whose pixels match their checksum; None for a missing, torn or damaged one."""
        try:
            with np.load(entry, allow_pickle=False) as stored:
                record = json.loads(str(stored["facts"]))
                image = stored["image"] if record["has_image"] else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        checksum = hashlib.blake2b(b"" if image is None else image.tobytes(), digest_size=16).hexdigest()
        if checksum != record["checksum"] or (image is not None and image.shape != (self.size, self.size, 3)):
            return None  # damaged: recomputed by the caller
        return image, Facts(**record["facts"])

    def _store(self, entry: Path, image: np.ndarray | None, facts: Facts) -> None:
        if self.root is None:
            return
        pixels = np.zeros((0,), np.uint8) if image is None else image
        checksum = hashlib.blake2b(b"" if image is None else image.tobytes(), digest_size=16).hexdigest()
        record = {"facts": asdict(facts), "checksum": checksum, "has_image": image is not None}
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as f:
                    np.savez(f, image=pixels, facts=np.array(json.dumps(record)))
                os.replace(temporary, entry)  # atomic on POSIX: readers see all or nothing
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:  # a full or read-only disk: go on without storing
            warnings.warn(
                f"intake cache {self.root} not written ({error.strerror}); continuing without it",
                stacklevel=2,
            )
            self.root = None


def _take_in_one(job: tuple[IntakeCache, Path]) -> Facts:
    cache, path = job
    return cache.get(path)[1]


def take_in_all(paths: Sequence[Path], cache: IntakeCache, workers: int | None = None) -> list[Facts]:
    """Facts of every file (taken in where not stored yet), in worker processes, with a progress bar.

    Args:
        paths: the image files.
        cache: where intake results live.
        workers: processes (default: all cores; 0 runs in this process).
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    quiet = len(paths) < 200
    facts = [cache.stored_facts(p) for p in tqdm(paths, desc="stored intake", unit="image", disable=quiet)]
    missing = [i for i, found in enumerate(facts) if found is None]
    jobs = [(cache, Path(paths[i])) for i in missing]
    bar = dict(total=len(jobs), desc="intake (quality gate, hashes, crops)", unit="image", disable=quiet)
    if workers == 0 or len(jobs) < 2 * max(workers, 1):
        computed = [_take_in_one(job) for job in tqdm(jobs, **bar)]
    else:
        with get_context("spawn").Pool(workers) as pool:
            computed = list(tqdm(pool.imap(_take_in_one, jobs, chunksize=8), **bar))
    for i, found in zip(missing, computed, strict=True):
        facts[i] = found
    return facts
