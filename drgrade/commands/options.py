"""Option helpers shared by the verbs."""

from __future__ import annotations

from collections.abc import Callable

from jsonargparse import ActionYesNo

from drgrade.errors import OptionError

#: Help of ``--paper`` (report and reproduce).
PAPER_HELP = "add the paper's published numbers beside ours"


def add_switch(parser, name: str, help: str) -> None:
    """An off-by-default ``--name`` / ``--no_name`` switch.

    Args:
        parser: the verb's parser.
        name: the option, e.g. ``--paper``.
        help: what turning it on does.
    """
    parser.add_argument(name, action=ActionYesNo, default=False, help=help)


def take_options(args: list[str], wanted: Callable[[str], bool]) -> tuple[list[str], list[tuple[str, str]]]:
    """Take the options ``wanted`` picks out of ``args`` (``--name value`` or ``--name=value``).

    For a verb that uses some options itself and hands the rest to a parser (``predict --out``,
    ``reproduce``'s stage options).

    Args:
        args: the command line.
        wanted: which option names to take.

    Returns:
        (the other arguments, in order; the taken (name, value) pairs, in order).
    """
    rest, taken = [], []
    i = 0
    while i < len(args):
        name, has_value, value = args[i].partition("=")
        if not wanted(name):
            rest.append(args[i])
        elif has_value:
            taken.append((name, value))
        elif i + 1 < len(args):
            taken.append((name, args[i + 1]))
            i += 1
        else:
            raise OptionError(f"{name} needs a value")
        i += 1
    return rest, taken
