"""``AtomicCheckpointIO``: checkpoints written to a temporary file beside the target, then renamed.

Lightning's default writes through fsspec, whose transaction stages the file in ``$TMPDIR``: a
save killed midway left a 58 MiB orphan there, and on another filesystem the final move is a
copy that can itself be torn. Beside the target, the rename is atomic and a leftover is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from drgrade.files import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoints, saved atomically (every reader sees the old or the complete new file)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` through a temporary file in the same folder.

        Args:
            checkpoint: the state to save.
            path: the target file.
            storage_options: unsupported (as in ``TorchCheckpointIO``).
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)
