"""Preprocess every image of the configured data into the cache now (the fit options apply)."""

from __future__ import annotations

from drgrade.data.cache import fill_cache
from drgrade.errors import OptionError


def add_arguments(parser) -> None:
    """``--workers``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--workers", type=int | None, default=None, help="processes (default: all cores)")


def run(cli) -> None:
    """Fill the cache of the configured data and image size.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    datamodule = cli.datamodule
    cache = datamodule.cache
    if cache is None:
        raise OptionError("data.cache is false: nothing to build")
    datamodule.load_records()
    count = fill_cache([r.path for r in datamodule.records], cache, cli.config.workers)
    print(f"{count} images cached in {cache.root}")
