"""A crash for tests: ``--trainer.callbacks+=tests.integration.killer.KillAfterBatches`` (no fixtures)."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAfterBatches(L.Callback):
    """SIGKILL this process when ``batches`` prediction batches have ended (a crash, mid-run)."""

    def __init__(self, batches: int):
        self.batches = batches
        self.ended = 0

    def on_predict_batch_end(self, *args, **kwargs) -> None:
        self.ended += 1
        if self.ended == self.batches:
            os.kill(os.getpid(), signal.SIGKILL)
