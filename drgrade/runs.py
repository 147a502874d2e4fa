"""Where a run's files go: one directory per run, shared by every callback and the datamodule."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The run directory: the first logger's versioned folder, else ``default_root_dir``.

    ``trainer.log_dir`` broadcasts from rank 0 under DDP, so every rank must call this.
    """
    path = Path(trainer.log_dir or trainer.default_root_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_checkpoint(root: str | Path, which: str) -> Path | None:
    """The newest ``last.ckpt`` (which="last") or ``best-*.ckpt`` (which="best") under ``root``.

    Each run writes to its own versioned folder, so Lightning's in-process meaning of
    ``--ckpt_path last/best`` would never find an earlier run's file; this looks across runs.
    """
    pattern = "last.ckpt" if which == "last" else "best-*.ckpt"
    found = sorted(Path(root).rglob(f"checkpoints/{pattern}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_checkpoint(entry: str, root: str | Path) -> str:
    """``entry`` itself, or for ``last`` / ``best`` the newest such checkpoint under ``root``."""
    if entry not in ("last", "best"):
        return entry
    found = find_checkpoint(root, entry)
    if found is None:
        raise SystemExit(
            f"drgrade: --ckpt_path {entry}: no {entry} checkpoint under {root}; "
            "train first with `drgrade fit` and the same config"
        )
    print(f"--ckpt_path {entry}: using {found}")
    return str(found)
