"""Where a run's files go: one directory per run, shared by every callback and the datamodule."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The run directory: the first logger's versioned folder, else ``default_root_dir``."""
    path = Path(trainer.log_dir or trainer.default_root_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
