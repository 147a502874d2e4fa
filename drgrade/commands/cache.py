"""Take in every image of the configured data ahead of training (gate, hashes, crops; all cores)."""

from __future__ import annotations

from drgrade.data.intake import take_in_all
from drgrade.errors import OptionError


def add_arguments(parser) -> None:
    """``--workers``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--workers", type=int | None, default=None, help="processes (default: all cores)")


def run(cli) -> None:
    """Take in every image of the configured sources, so that fit/validate/test start at once.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    datamodule = cli.datamodule
    if datamodule.intake.root is None:
        raise OptionError("data.cache is false: there is no intake cache to fill")
    records = datamodule.read_sources().records
    facts = take_in_all([r.path for r in records], datamodule.intake, cli.config.workers)
    unusable = sum(1 for f in facts if f.error)
    print(f"{len(facts)} images taken in ({unusable} unreadable) into {datamodule.intake.root}")
