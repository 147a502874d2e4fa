"""A crash for tests: ``--trainer.callbacks+=tests.integration.killer.KillAfterBatches`` (no fixtures)."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAfterBatches(L.Callback):
    """SIGKILL this process as prediction batch ``batches`` starts (a crash mid-run, that batch unwritten).

    At the batch's start, not the previous one's end: the writers are trainer callbacks listed
    before any added on the command line, so they have written every batch that ended.
    """

    def __init__(self, batches: int):
        self.batches = batches
        self.started = 0

    def on_predict_batch_start(self, *args, **kwargs) -> None:
        self.started += 1
        if self.started == self.batches:
            os.kill(os.getpid(), signal.SIGKILL)
