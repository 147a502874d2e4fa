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
- checked on read by a checksum binding the stored pixels and facts to that file version (a
  damaged entry, or another file's entry put in its place, is recomputed, never served), and
  opened without blocking (a pipe put in its place never hangs a run);
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
from stat import S_ISREG

import cv2
import numpy as np
from tqdm import tqdm

from drgrade.data.dicom import Exam
from drgrade.data.duplicates import difference_hash
from drgrade.data.images import MAX_PIXELS, ImageReadError, decode, read_bytes, read_header, shape_problem
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
INTAKE_VERSION = 7
ENV_CACHE_DIR = "DRGRADE_CACHE_DIR"


@dataclass(frozen=True)
class Facts:
    """What one read of an image file established.

    ``error`` says why it could not be decoded (empty when it was); ``measured`` are the gate's
    measurements (None without a decode); ``digest`` is the BLAKE2b of the file's bytes and
    ``dhash`` the 256-bit difference hash of its fundus (hexadecimal); ``patient_id``, ``eye`` and
    ``study_date`` the exam a DICOM file names (empty for other files).
    """

    error: str
    width: int = 0
    height: int = 0
    measured: dict[str, float] | None = None
    digest: str = ""
    dhash: str = ""
    patient_id: str = ""
    eye: str = ""
    study_date: str = ""

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
    digest = content_digest(data) if hashes else ""
    exam = Exam()
    try:
        header = read_header(data, path)
        exam = header.exam or exam
        if not file_is_complete(data):
            reason = "ungradable: incomplete file (cut off before its end)"
            return None, Facts(reason, digest=digest, **asdict(exam))
        if header.width * header.height > MAX_PIXELS:
            return None, Facts("", header.width, header.height, None, digest, **asdict(exam))
        problem = shape_problem(header.width, header.height)
        if problem:  # judged from the header: nothing is allocated for it
            reason = f"ungradable: {problem}"
            return None, Facts(reason, header.width, header.height, digest=digest, **asdict(exam))
        image = decode(data, path, decode_target(size), header=header)
        crop = preprocess_fundus(image, size)
    except ImageReadError as error:
        return None, Facts(str(error).removeprefix(f"{path}: "), digest=digest, **asdict(exam))
    except (cv2.error, MemoryError) as error:  # one file never costs a batch its other rows
        said = f"{type(error).__name__}: {str(error).strip()[:120]}"
        return None, Facts(f"could not be decoded ({said})", digest=digest, **asdict(exam))
    bits = np.packbits(difference_hash(crop)).tobytes().hex() if hashes else ""  # from the crop
    facts = Facts("", header.width, header.height, measure(image), digest, bits, **asdict(exam))
    return crop, facts


def file_identity(path: Path) -> str:
    """A file version's identity: resolved path, size, modification and change times, inode.

    An edited file gets a new identity even if its modification time was restored (its change
    time cannot be). Raises ``OSError`` for a file that cannot be examined.
    """
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"


def content_digest(data: bytes) -> str:
    """The content digest of a file's bytes (BLAKE2b, 128 bits, hexadecimal)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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

    def identity(self, source: Path) -> str:
        """What makes an entry this file's: its version (resolved path, size, times, inode) and settings."""
        return f"{file_identity(source)}|{self.size}|v{INTAKE_VERSION}"

    def entry(self, identity: str) -> Path:
        """The cache file of the file version ``identity`` names."""
        key = hashlib.sha1(identity.encode(errors="surrogateescape")).hexdigest()
        return self.root / key[:2] / f"{key}.npz"

    def get(self, source: str | Path) -> tuple[np.ndarray | None, Facts]:
        """The source's (crop, facts): stored, or taken in now (and stored)."""
        source = Path(source)
        if self.root is None:
            return take_in(source, self.size)
        try:
            identity = self.identity(source)
        except OSError:
            return take_in(source, self.size)  # gone or unreadable: take_in says which
        stored = self._read(identity)
        if stored is not None:
            return stored
        image, facts = take_in(source, self.size)
        self._store(identity, image, facts)
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
            identity = self.identity(Path(source))
            record = self._load(identity, with_image=False)[0]
            return Facts(**record["facts"]) if record["identity"] == identity else None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            return None

    def _load(self, identity: str, with_image: bool = True) -> tuple[dict, np.ndarray | None]:
        """An entry's record and pixels, opened without blocking (a FIFO put in its place never hangs)."""
        descriptor = os.open(self.entry(identity), os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as f:
            if not S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(f"{self.entry(identity)} is not a regular file")
            with np.load(f, allow_pickle=False) as stored:
                record = json.loads(str(stored["facts"]))
                image = stored["image"] if with_image and record["has_image"] else None
        return record, image

    def _read(self, identity: str) -> tuple[np.ndarray | None, Facts] | None:
        """This file's stored entry, whole and undamaged; None for a missing, torn, damaged or foreign one."""
        try:
            record, image = self._load(identity)
            checksum = entry_checksum(identity, record["facts"], image)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            return None
        if checksum != record["checksum"] or (image is not None and image.shape != (self.size, self.size, 3)):
            return None  # damaged, or another file's entry: recomputed by the caller
        return image, Facts(**record["facts"])

    def _store(self, identity: str, image: np.ndarray | None, facts: Facts) -> None:
        if self.root is None:
            return
        pixels = np.zeros((0,), np.uint8) if image is None else image
        record = {
            "identity": identity,
            "facts": asdict(facts),
            "checksum": entry_checksum(identity, asdict(facts), image),
            "has_image": image is not None,
        }
        entry = self.entry(identity)
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


def entry_checksum(identity: str, facts: dict, image: np.ndarray | None) -> str:
    """The checksum binding an entry's pixels and facts to the file version they came from.

    An entry copied over another file's (both genuine) fails it, so a crop is never served for
    the wrong photograph.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(identity.encode(errors="surrogateescape"))
    digest.update(json.dumps(facts, sort_keys=True).encode())
    digest.update(b"" if image is None else image.tobytes())
    return digest.hexdigest()


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
