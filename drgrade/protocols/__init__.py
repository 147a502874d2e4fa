"""Research protocols from protocol files: seeds x folds, leave one source out, few-shot budgets.

``drgrade reproduce --protocol <name or file> --demo|--data DIR`` runs one (``run_protocol``);
``spec`` reads the file, ``runner`` plans and runs the runs, ``adapters`` and ``evaluate`` are
the embedding-based models, ``statistics`` and ``report`` turn the runs into the report.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from drgrade.protocols.report import write_protocol_report
from drgrade.protocols.runner import ProtocolRunner
from drgrade.protocols.spec import Protocol, load_protocol

__all__ = ["Protocol", "load_protocol", "run_protocol"]


def run_protocol(
    cli_class,
    protocol: Protocol,
    overlay: list[str],
    train_overlay: list[str],
    configs: Path,
    out: Path,
    handed,
) -> str:
    """Run ``protocol`` and write its report under ``out``; returns the report's Markdown.

    Args:
        cli_class: the CLI class each stage runs through.
        protocol: the protocol.
        overlay: the data arguments of every stage (the demo config, or the real data's roots).
        train_overlay: extra arguments of the models that train (the demo's training overlay).
        configs: the folder of model configs.
        out: the report folder.
        handed: config options for every stage (each model takes those it has).
    """
    from drgrade.commands.reproduce import _fit_then_test, stage_options

    def stage_args(model: str) -> list[str]:
        config = configs / f"{model}.yaml"
        trained = train_overlay if model != "zero_shot" else []
        return [
            "--config",
            str(config),
            *overlay,
            *trained,
            *stage_options(list(handed), config, out / "handed-configs"),
        ]

    runner = ProtocolRunner(
        protocol,
        out,
        stage_args("zero_shot"),
        stage_args,
        partial(_fit_then_test, cli_class),
        cli_class,
    )
    rows = runner.run()
    title = f"# drgrade protocol {protocol.name}" + (
        " on SYNTHETIC data, tiny random-weight CLIP (pipeline check, not a result)"
        if overlay[:1] == ["--config"]
        else ""
    )
    return write_protocol_report(protocol, rows, out, title)
