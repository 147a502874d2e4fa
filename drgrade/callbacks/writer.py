"""``RunWriter``: the base of every callback that writes a run's files.

The writers are configured in ``configs/trainer.yaml`` (``trainer.callbacks``) with their own
options, so a user turns one off by leaving it out of the list, or adds one, from YAML. What
the writers must know about the run and cannot read from the trainer (which checkpoint the
model came from, or that it is an untrained baseline) the engine tells them before each stage
(``Engine.announce``): the task holds no run state.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from drgrade.runs import run_dir


class RunWriter(Callback):
    """A callback writing files about a run.

    Args:
        folder: where its files go (default: the run folder, ``runs/<model>/version_N``).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        super().__init__()
        self.folder = None if folder is None else Path(folder)
        #: The model's origin as result files name it (``checkpoint_label``), set by the engine.
        self.origin = ""

    def out(self, trainer: L.Trainer) -> Path:
        """The folder to write to (a collective under DDP: every rank must ask)."""
        folder = run_dir(trainer)
        if self.folder is None:
            return folder
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder
