"""Build Table 3 and Table 4 (Markdown, CSV) and the paper's figures from run folders."""

from __future__ import annotations

from pathlib import Path

from drgrade.commands.options import PAPER_HELP, add_switch
from drgrade.reporting.report import write_report


def add_arguments(parser) -> None:
    """The run folders, ``--out`` and ``--paper``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("runs", nargs="+", help="run directories holding metrics.json (from drgrade test)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the tables and figures")
    add_switch(parser, "--paper", PAPER_HELP)
    add_switch(
        parser,
        "--allow_mixed",
        "show runs of different stages, splits or graded images together (each labelled)",
    )


def run(opts) -> None:
    """Write the report and print it.

    Args:
        opts: the parsed options.
    """
    print(write_report(opts.runs, opts.out, with_paper=opts.paper, allow_mixed=opts.allow_mixed))
    print(f"report written to {opts.out}/")
