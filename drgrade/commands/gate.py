"""``drgrade gate``: the quality gate measured against a dataset's own gradability labels.

    drgrade gate --data.roots.messidor2 data/messidor2 --out reports/gate

Reads the configured sources like ``fit`` does, keeps the photographs their dataset labels for
gradability (EyeQ, Messidor-2, DDR, DeepDRiD's ``Overall quality``), runs the gate on each (the
one intake every path uses; with ``--data.quality_model``, the learned gate too) and writes
into ``--out``: ``gate.json`` (sensitivity and specificity for "reject" with Wilson intervals,
the confusion, per verdict), ``gate_confusion.csv``, ``gate_images.csv`` (every
photograph with both verdicts) and ``gate_misjudged.png`` (a sheet of the disagreements).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from drgrade.data import DRDataModule
from drgrade.data.intake import judge, take_in_all
from drgrade.data.quality import QualityLimits
from drgrade.data.sources.common import GRADABILITY, gradability_labelled
from drgrade.errors import OptionError
from drgrade.evaluation.gate import Judged, agreement, summary_text
from drgrade.files import atomic_open, atomic_write_text, neutralise
from drgrade.reporting.misjudged import misjudged_sheet
from drgrade.tasks.quality import QualityModel

#: The sources whose downloads say which photographs are ungradable, for the error message.
LABELLED_SOURCES = (
    "EyeQ (data.roots.eyeq), Messidor-2 (data.roots.messidor2), DDR (data.roots.ddr), "
    "DeepDRiD (data.roots.deepdrid)"
)


def add_arguments(parser) -> None:
    """The data options (``--data.roots.<source>`` ...), ``--out`` and ``--sheet``.

    Args:
        parser: the verb's parser.
    """
    parser.add_class_arguments(DRDataModule, "data")
    parser.add_argument("--out", type=Path, default=Path("reports/gate"), help="folder for the results")
    parser.add_argument("--sheet", type=int, default=48, help="most misjudged photographs drawn in the sheet")


def run(opts) -> None:
    """Judge every gradability-labelled photograph, print the agreement and write the files.

    Args:
        opts: the parsed options.
    """
    if opts.sheet < 0:
        raise OptionError(f"--sheet must be >= 0, got {opts.sheet}")
    options = opts.data.as_dict()
    if options.get("quality"):  # --data.quality.<field>: the same limits as every other verb
        options["quality"] = QualityLimits(**options["quality"])
    data = DRDataModule(**options)
    labelled = gradability_labelled(data.read_sources())
    if not labelled:
        raise OptionError(
            f"none of the configured photographs has a gradability label; drgrade gate needs a source "
            f"that has them: {LABELLED_SOURCES}"
        )
    facts = take_in_all([record.path for record, _ in labelled], data.intake, data.hparams.num_workers)
    model = QualityModel(data.hparams.quality_model) if data.hparams.quality_model else None
    limits = data.quality_limits
    judged = []
    for (record, human), fact in zip(labelled, facts, strict=True):
        verdict = judge(fact, limits)
        if not verdict and model is not None:  # the learned gate, on the crop the intake stored
            verdict = model.verdict(data.intake.get(record.path)[0])
        judged.append(Judged(record, human, verdict))
    result = agreement(judged)
    written = write_results(judged, result, opts.out, opts.sheet)
    print(summary_text(result))
    print(f"written to {opts.out}/ ({', '.join(written)})")


def write_results(judged: list[Judged], result: dict, out: Path, sheet: int) -> list[str]:
    """``gate.json``, ``gate_confusion.csv``, ``gate_images.csv`` and the misjudged sheet in ``out``.

    Returns the names of the files written (no sheet when nothing was misjudged or it is off).
    """
    atomic_write_text(out / "gate.json", json.dumps(result, indent=2) + "\n")
    with atomic_open(out / "gate_confusion.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["graders", "gate passed", "gate refused"])
        for human in GRADABILITY:
            if human in result["confusion"]:
                row = result["confusion"][human]
                writer.writerow([human, row["passed"], row["refused"]])
    with atomic_open(
        out / "gate_images.csv", "w", newline="", encoding="utf-8", errors="surrogateescape"
    ) as f:
        writer = csv.writer(f)
        writer.writerow(["path", "source", "graders", "gate", "verdict", "misjudged"])
        for item in judged:
            cells = [str(item.record.path), item.record.source, item.human, item.kind, item.verdict]
            writer.writerow([neutralise(c) for c in [*cells, int(item.misjudged)]])
    (out / "gate_misjudged.png").unlink(missing_ok=True)  # a sheet from an earlier run is not this one's
    if sheet:
        misjudged_sheet(judged, out / "gate_misjudged.png", sheet)
    written = ["gate.json", "gate_confusion.csv", "gate_images.csv"]
    return written + (["gate_misjudged.png"] if (out / "gate_misjudged.png").exists() else [])
