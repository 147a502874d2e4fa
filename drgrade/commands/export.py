"""Export a trained checkpoint as ONNX (images -> probabilities, grade; a quality model: its levels)."""

from __future__ import annotations

import tempfile
from itertools import zip_longest
from pathlib import Path
from typing import Literal

from drgrade.commands.options import add_switch
from drgrade.data.images import list_images
from drgrade.data.sources import LAYOUTS
from drgrade.errors import DrgradeError, OptionError
from drgrade.files import check_writable
from drgrade.predictions import checkpoint_label
from drgrade.serving.card import card_path, find_evaluation
from drgrade.serving.export import export_quality_onnx
from drgrade.serving.quantize import quantize_onnx
from drgrade.tasks import QualityTask, load_task


def add_arguments(parser) -> None:
    """``--ckpt_path``, ``--out`` and the INT8 options.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--ckpt_path", type=str, required=True, help="checkpoint to export (or last / best)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument(
        "--quantize",
        type=Literal["int8"] | None,
        default=None,
        help="also write an INT8 model beside it (<out>.int8.onnx) for fast CPU screening",
    )
    parser.add_argument(
        "--calibration_images",
        type=Path | None,
        default=None,
        help="images calibrating the INT8 activations (default: the configured training split, "
        "else synthetic fundus photographs)",
    )
    add_switch(
        parser,
        "--keep_slower_int8",
        "keep an INT8 model that runs slower than float on this machine (for its size alone)",
    )


def run(cli) -> None:
    """Export the checkpoint at the image size it recorded.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts = cli.config
    check_writable(opts.out, [opts.ckpt_path, opts.calibration_images])
    task, origin = load_task(opts.ckpt_path), checkpoint_label(opts.ckpt_path)
    if isinstance(task, QualityTask):
        export_quality(opts, task, origin)
        return
    evaluation = find_evaluation(opts.ckpt_path, origin.partition(" sha256:")[2])
    written = cli.engine.export(task, opts.out, origin, evaluation)
    print(f"exported {opts.ckpt_path} to {written}, its model card to {card_path(written)}")
    if evaluation is None:
        print("  the card has no test figures: no evaluation of this checkpoint was found (drgrade test)")
    if opts.quantize == "int8":
        with tempfile.TemporaryDirectory() as spare:
            paths, source = calibration_images(cli, opts.calibration_images, Path(spare))
            written = quantize_onnx(written, paths, source, keep_slower=opts.keep_slower_int8)
        print(f"INT8 model (calibrated on {source}): {written}")
    print(f"grade images with: python -m drgrade.deploy {written} DIR")


def export_quality(opts, task: QualityTask, origin: str) -> None:
    """A quality model's own graph (no decision rule, no card): the learned gate for deploy and serve."""
    if opts.quantize:
        raise OptionError("--quantize int8 is for grading models; a quality model is exported in float only")
    written = export_quality_onnx(task, opts.out, task.hparams.image_size, origin)
    print(f"exported the quality model {opts.ckpt_path} to {written}")
    print(f"gate with it: python -m drgrade.deploy MODEL.onnx DIR --quality_onnx {written}")


def calibration_images(cli, folder: Path | None, spare: Path, limit: int = 32) -> tuple[list[Path], str]:
    """The images INT8 calibration runs on, and what they are.

    The folder given; else the configured training split, spread over the grades; else (no data
    configured or found) synthetic fundus photographs written to ``spare``.

    Args:
        cli: the running ``DRGradeCLI`` (its datamodule).
        folder: ``--calibration_images``, or None.
        spare: a folder for synthetic images.
        limit: images wanted.
    """
    if folder is not None:
        paths, _ = list_images(folder)
        return paths, str(folder)
    try:
        cli.datamodule.setup("fit")
        records = cli.datamodule.records_of("train")
    except DrgradeError as error:
        first = str(error).splitlines()[0].rstrip(":")
        print(
            f"no training split to calibrate on ({first}): calibrating on synthetic photographs; pass "
            "--calibration_images DIR (a few dozen of your own) for ranges that fit your camera"
        )
        root = LAYOUTS["aptos"].write_synthetic(spare, limit, cli.datamodule.hparams.image_size * 2, 0)
        paths, _ = list_images(root / "train_images")
        return paths[:limit], "synthetic fundus photographs"
    by_grade: dict[int, list[Path]] = {}
    for record in records:
        by_grade.setdefault(record.grade, []).append(record.path)
    spread = [p for group in zip_longest(*by_grade.values()) for p in group if p is not None]
    return spread[:limit], "the configured training split"
