"""Every error a user can fix: the CLI shows these without a traceback and exits 2.

Anything else that reaches the entry point is a bug in drgrade and keeps its traceback. Each
message names the file, row or option at fault and says what to do next. Torch-free, so the
ONNX runner uses the same classes.
"""

from __future__ import annotations


class DrgradeError(Exception):
    """Base class: a problem in the user's input (option, file, data), not in drgrade."""


class OptionError(DrgradeError, ValueError):
    """A bad option value; the message names the option and what to pass instead."""


class DataValidationError(DrgradeError, ValueError):
    """Every problem found in the input data, one per line, so all can be fixed in one pass.

    Args:
        problems: one line per problem, each naming its file and row.
    """

    #: Problems listed in the message (the rest are counted), and the longest line shown of each:
    #: a sheet of a million garbage rows must not make a message of a hundred megabytes.
    LISTED, LINE = 30, 300

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = [p if len(p) <= self.LINE else p[: self.LINE] + "..." for p in problems[: self.LISTED]]
        listed = "\n".join(f"  - {p}" for p in shown)
        more = f"\n  ... and {len(problems) - self.LISTED} more" if len(problems) > self.LISTED else ""
        super().__init__(
            f"{len(problems)} problem(s) in the input data:\n{listed}{more}\n"
            "Fix or remove these entries (no file was changed) and run again."
        )


class WeightsFileError(DrgradeError):
    """Pretrained weights that could not be obtained or were refused, with what to do instead."""


class CheckpointError(DrgradeError, ValueError):
    """A file that is not a loadable drgrade checkpoint (missing, corrupt, foreign, unsafe or broken)."""


class SplitMismatchError(OptionError):
    """A checkpoint evaluated on a split other than the one it was trained and calibrated on."""


class ModelFileError(DrgradeError, ValueError):
    """An exported model (ONNX) the runner refuses: unreadable, not drgrade's, or out of bounds."""


class OutputError(DrgradeError):
    """A result file drgrade cannot write (a folder in the way, no permission, a full disk)."""


class MissingExtraError(DrgradeError):
    """A verb needs an optional dependency that is not installed; the message names the extra."""


class QuantizationError(DrgradeError):
    """An INT8 model that could not be made, or would be slower than the float one it replaces."""
