"""Research protocols from protocol files: seeds x folds, leave one source out, few-shot budgets.

``drgrade reproduce --protocol <name or file> --demo|--data DIR`` runs one (``run_protocol``);
``spec`` reads the file, ``runner`` plans and runs the runs, ``adapters`` and ``evaluate`` are
the embedding-based models, ``statistics`` and ``report`` turn the runs into the report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from drgrade.protocols.report import write_protocol_report
from drgrade.protocols.runner import ProtocolRunner
from drgrade.protocols.spec import Protocol, load_protocol

__all__ = ["Protocol", "load_protocol", "run_protocol"]


def run_protocol(
    cli_class,
    protocol: Protocol,
    out: Path,
    stage_args: Callable[[str], list[str]],
    fit_then_test: Callable[[list[str], list[str]], str],
    synthetic: bool,
) -> str:
    """Run ``protocol`` and write its report under ``out``; returns the report's Markdown.

    Args:
        cli_class: the CLI class (instantiates the data and the frozen backbone).
        protocol: the protocol.
        out: the report folder.
        stage_args: a model's CLI arguments (its config, the data overlay, handed-on options).
        fit_then_test: runs ``fit`` then ``test`` of CLI arguments, appending the test run folder.
        synthetic: the demo's synthetic data (said in the report's title).
    """
    runner = ProtocolRunner(protocol, out, stage_args("zero_shot"), stage_args, fit_then_test, cli_class)
    rows = runner.run()
    title = f"# drgrade protocol {protocol.name}" + (
        " on SYNTHETIC data, tiny random-weight CLIP (pipeline check, not a result)" if synthetic else ""
    )
    return write_protocol_report(protocol, rows, out, title)
