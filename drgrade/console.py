"""A quiet console: progress bars, the split table, results and the warnings a user can act on.

Each message silenced here was read and judged to carry nothing a drgrade user can act on;
anything else still prints. Installed by ``drgrade.cli.main`` for every verb.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path

#: (logger name, message pattern, why it is dropped).
LOG_NOISE = (
    ("lightning.pytorch.utilities.rank_zero", r"💡 Tip", "an advertisement for another product"),
    # open_clip says this when asked for random weights (``pretrained: null``, the demo and
    # tests); a failed request for real weights raises drgrade's WeightsFileError instead
    ("root", r"No pretrained weights loaded for model", "random weights were asked for"),
    # drgrade reads every checkpoint with weights_only=True itself (tasks/loading.py) and hands
    # Lightning weights_only=True; this note about Lightning's own default read as if it did not
    (
        "lightning.pytorch.trainer.connectors.checkpoint_connector",
        r"`weights_only` was not set",
        "drgrade loads checkpoints as tensors only; Lightning's default is never used",
    ),
)
#: (message pattern, why it is ignored) for Python warnings.
WARNING_NOISE = (
    (r"LightningCLI's args parameter is intended", "reproduce passes each stage's arguments on purpose"),
    (
        r"Found \d+ module\(s\) in eval mode",
        "frozen CLIP towers (and their BatchNorm) stay in eval mode on purpose",
    ),
    (r".*isinstance\(treespec, LeafSpec\)", "Lightning's own use of a torch API it will update"),
    (
        r"\s*``instantiate_classes`` was deprecated",
        "LightningCLI's own call of a jsonargparse 4.49 API it will update",
    ),
    (
        r"\s*By default only one JsonargparseDeprecationWarning",
        "jsonargparse's note on the deprecations above (LightningCLI's own calls)",
    ),
    (
        r"\s*skip_none parameter was deprecated",
        "LightningCLI's own call of a jsonargparse 4.49 API it will update",
    ),
    (
        r"The dirpath has changed from",
        "a checkpoint of another run is evaluated on purpose: its weights and rule count, not its callbacks",
    ),
    (
        r"The number of training batches \(\d+\) is smaller than the logging interval",
        "every epoch's metrics are logged at its end whatever the interval (small demo and test splits)",
    ),
    (r"The copy keyword is deprecated", "Gradio's own use of a pandas API it will update"),
    (r"'future.no_silent_downcasting' is deprecated", "Gradio's own use of a pandas API it will update"),
)


class _Drop(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def printable_names() -> None:
    """Let the console print any file name: one that is not valid UTF-8 is shown escaped, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def quiet_console() -> None:
    """Install the filters (idempotent: a filter already installed is not added twice).

    W&B's own console output (a summary of every run, notices) is silenced the way ``make`` did,
    unless the user set ``WANDB_SILENT`` otherwise; runs are still written and synced as usual.
    """
    os.environ.setdefault("WANDB_SILENT", "true")
    for name, pattern, _ in LOG_NOISE:
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_Drop(pattern))
    for pattern, _ in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.formatwarning = one_line_warning
    follow_the_console()


#: Python's own warning format, for warnings raised outside drgrade.
PYTHON_FORMAT = warnings.formatwarning
#: drgrade's source folder: a warning raised from a file under it is one of drgrade's own.
PACKAGE = Path(__file__).resolve().parent


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning of drgrade's own as one line saying what to know; others as Python shows them.

    Python prints a warning with the file, line and source line that raised it: for a user,
    noise around the one sentence drgrade wrote for them.
    """
    if Path(filename).resolve().is_relative_to(PACKAGE):
        return f"warning: {message}\n"
    return PYTHON_FORMAT(message, category, filename, lineno, line)


#: The loggers Lightning gives a console handler of its own (which one depends on its version).
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")


class _CurrentStderr:
    """``sys.stderr`` as it is at each write (not as it was when a handler was made)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def follow_the_console() -> None:
    """Make Lightning's console handlers write to ``sys.stderr`` as it is at each message.

    Lightning binds its handler to the stream of the moment it is imported. A process that runs
    several verbs while its streams are swapped (a notebook, a test harness, a program that
    embeds drgrade) would otherwise log into a stream closed since, and print a "Logging error"
    traceback where a one-line message was promised.
    """
    for name in LIGHTNING_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            plain = isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            )
            if plain and not isinstance(handler.stream, _CurrentStderr):
                handler.setStream(_CurrentStderr())
