"""Option helpers shared by the verbs."""

from __future__ import annotations

from jsonargparse import ActionYesNo

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
