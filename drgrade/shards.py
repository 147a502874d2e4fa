"""Prediction shards: what each process graded, appended per batch, so that a killed run resumes.

``drgrade predict`` over an archive runs for hours on many processes; each process (DDP rank)
appends every batch's results to its own shard, ``<root>/shards/<key>/rank-<N>.jsonl``, and the
one predictions.csv is merged from the shards at the end. A run killed at any point (``kill -9``
included) is resumed by the same command: the photographs already in a shard are not graded
again, and no finished row is lost.

- **Keyed by content**: a result belongs to the photograph's content digest (BLAKE2b of its bytes,
  the intake's); a file is matched to its digest through its identity (path, size, times, inode),
  so a resume reads no photograph it already graded, and an edited file is graded again.
- **Bound to the model**: the shard folder is named after, and each shard's first line states,
  the checkpoint (its SHA-256), the model's options and the data settings that change a result
  (input size, quality gate); another model or decision rule writes to another folder, and a
  shard whose header does not match is not read.
- **Atomic per batch**: a batch is one ``write`` of its rows and an end line holding their count
  and checksum, then ``fsync``; a block cut short by a kill has no valid end line and is ignored
  (its photographs are graded again), so a shard never yields half a batch.

Torch-free: plain JSON lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

#: Bump when a shard's lines change meaning, to retire every existing shard.
SHARD_VERSION = 1


@dataclass(frozen=True)
class Result:
    """One photograph's graded result as a shard holds it (nothing of the record it came from).

    Args:
        identity: the file version's identity (``drgrade.data.intake.file_identity``), or
            ``missing:<path>`` for a file that could not be examined.
        digest: its content digest (empty when it could not be read).
        error: why it was not graded (empty when it was).
        decision: the rule's decision as a dict of ``drgrade.predictions.Decision`` fields, or None.
        quality: the gate's measurements, or None.
        exam: patient, eye and study date from a DICOM header (empty strings otherwise).
    """

    identity: str
    digest: str
    error: str
    decision: dict | None
    quality: list[float] | None
    exam: tuple[str, str, str]

    @property
    def key(self) -> str:
        """What the result is stored under: the content digest, else the file version."""
        return self.digest or f"file:{self.identity}"


def shard_key(identity: dict) -> str:
    """The shard folder's name for a model and data settings (``identity``, JSON-able)."""
    return hashlib.sha256(canonical(identity).encode()).hexdigest()[:16]


def canonical(identity: dict) -> str:
    """``identity`` as the one JSON text a header states (sorted keys; other values as strings)."""
    return json.dumps({"shard_version": SHARD_VERSION, **identity}, sort_keys=True, default=str)


class ShardStore:
    """The shards of one model and data settings under ``root``.

    Args:
        root: the folder holding ``shards/`` (a run root such as ``runs/fcn_clip``).
        identity: what makes a result valid (checkpoint label, options, data settings).
    """

    def __init__(self, root: str | Path, identity: dict):
        self.header = canonical(identity)
        self.folder = Path(root) / "shards" / shard_key(identity)

    def shard(self, rank: int) -> Path:
        """The shard process ``rank`` appends to."""
        return self.folder / f"rank-{rank}.jsonl"

    def append(self, rank: int, results: list[Result]) -> None:
        """Append one batch's results to ``rank``'s shard as one block, atomically for a reader.

        The block starts on a fresh line (a block torn by an earlier kill is then one bad line)
        and ends with its count and checksum; it is written with one ``write`` and synced.
        """
        if not results:
            return
        rows = "".join(json.dumps({"row": _encoded(r)}) + "\n" for r in results)
        end = json.dumps({"end": len(results), "blake2b": _checksum(rows)})
        path = self.shard(rank)
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            header = json.dumps({"drgrade_shard": json.loads(self.header)}) + "\n"
            opening = header if os.fstat(descriptor).st_size == 0 else ""
            block = memoryview(f"\n{opening}{rows}{end}\n".encode())
            while block:  # a regular file takes it in one write; a short write is continued, not lost
                block = block[os.write(descriptor, block) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def results(self) -> list[Result]:
        """Every complete block's results, in every shard of this folder (a torn block is skipped).

        A shard whose header is not this model's is not read (with a warning naming it).
        """
        found: list[Result] = []
        for path in sorted(self.folder.glob("rank-*.jsonl")):
            found += self._read(path)
        return found

    def _read(self, path: Path) -> list[Result]:
        accepted: list[Result] = []
        pending: list[str] = []
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a block cut short by a kill
                    pending = []
                    continue
                if "drgrade_shard" in entry:
                    if canonical_header(entry["drgrade_shard"]) != self.header:
                        warnings.warn(f"{path}: written by another model or settings; not read", stacklevel=2)
                        return []
                elif "row" in entry:
                    pending.append(line)
                elif "end" in entry:
                    rows = "".join(pending)
                    if entry["end"] == len(pending) and entry.get("blake2b") == _checksum(rows):
                        accepted += [_decoded(json.loads(row)["row"]) for row in pending]
                    pending = []
        return accepted


def canonical_header(stated: dict) -> str:
    """A header's identity as ``canonical`` writes it (for comparison)."""
    return json.dumps(stated, sort_keys=True, default=str)


def _checksum(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _encoded(result: Result) -> dict:
    return asdict(result)


def _decoded(entry: dict) -> Result:
    return Result(**{**entry, "exam": tuple(entry["exam"])})
