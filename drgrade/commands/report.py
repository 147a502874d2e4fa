"""Build Table 3 and Table 4 (Markdown, CSV) and the paper's figures from run folders."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionYesNo

from drgrade.evaluation.report import write_report

MODEL_BOUND = False


def add_arguments(parser) -> None:
    """The run folders, ``--out`` and ``--paper``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("runs", nargs="+", help="run directories holding metrics.json (from drgrade test)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder for the tables and figures")
    add_paper_argument(parser)
    parser.add_argument(
        "--allow_mixed_stages",
        action=ActionYesNo,
        default=False,
        help="show validation and test runs together (labelled); refused otherwise",
    )


def add_paper_argument(parser) -> None:
    """``--paper``: put the paper's published numbers beside ours (also used by ``reproduce``).

    Args:
        parser: the verb's parser.
    """
    parser.add_argument(
        "--paper", action=ActionYesNo, default=False, help="add the paper's published numbers"
    )


def run(cli) -> None:
    """Write the report and print it.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts = cli.options()
    print(
        write_report(opts.runs, opts.out, with_paper=opts.paper, allow_mixed_stages=opts.allow_mixed_stages)
    )
    print(f"report written to {opts.out}/")
