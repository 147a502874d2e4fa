"""Export a trained checkpoint as ONNX (normalised image -> probabilities, grade)."""

from __future__ import annotations

from pathlib import Path

from drgrade.export import export_onnx
from drgrade.tasks import load_task

MODEL_BOUND = True


def add_arguments(parser) -> None:
    """``--ckpt_path`` and ``--out``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--ckpt_path", type=str, required=True, help="checkpoint to export (or last / best)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")


def run(cli) -> None:
    """Export the checkpoint at the data's image size.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts = cli.options()
    written = export_onnx(load_task(opts.ckpt_path), opts.out, cli.datamodule.hparams.image_size)
    print(
        f"exported {opts.ckpt_path} to {written}; grade images with: python -m drgrade.deploy {written} DIR"
    )
