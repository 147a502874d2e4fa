"""Export a trained checkpoint as ONNX (normalised image -> probabilities, grade)."""

from __future__ import annotations

from pathlib import Path

from drgrade.serving.export import export_onnx
from drgrade.serving.quantize import quantize_onnx
from drgrade.tasks import load_task


def add_arguments(parser) -> None:
    """``--ckpt_path``, ``--out`` and the INT8 options.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--ckpt_path", type=str, required=True, help="checkpoint to export (or last / best)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument(
        "--quantize",
        type=str | None,
        default=None,
        choices=[None, "int8"],
        help="also write an INT8 model beside it (<out>.int8.onnx) for fast CPU screening",
    )
    parser.add_argument(
        "--calibration_images",
        type=Path | None,
        default=None,
        help="training images calibrating the INT8 activations (static quantisation; without: dynamic)",
    )


def run(cli) -> None:
    """Export the checkpoint at the data's image size.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts = cli.config
    written = export_onnx(load_task(opts.ckpt_path), opts.out, cli.datamodule.hparams.image_size)
    print(f"exported {opts.ckpt_path} to {written}")
    if opts.quantize == "int8":
        written = quantize_onnx(written, opts.calibration_images)
        print(f"INT8 model: {written}")
    print(f"grade images with: python -m drgrade.deploy {written} DIR")
