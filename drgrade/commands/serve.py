"""Start the screening web page for a checkpoint or an ONNX model (pip install drgrade[app])."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from drgrade.errors import MissingExtraError, OptionError


def add_arguments(parser) -> None:
    """``--ckpt_path`` or ``--onnx``, the learned gate (``--quality_model``, ``--quality_onnx``), host, port.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--ckpt_path", type=str | None, default=None, help="a checkpoint file to serve")
    parser.add_argument(
        "--onnx", type=str | None, default=None, help="an exported .onnx to serve instead (no attention maps)"
    )
    parser.add_argument(
        "--quality_model",
        type=str | None,
        default=None,
        help="a quality checkpoint (configs/quality.yaml) gating beside the rule gate (with --ckpt_path)",
    )
    parser.add_argument(
        "--quality_onnx",
        type=str | None,
        default=None,
        help="or that model exported by drgrade export (with --ckpt_path or --onnx)",
    )
    parser.add_argument(
        "--host", type=str, default="127.0.0.1", help="address to bind (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")


def grader_of(opts, quality_model: str | None = None, quality_onnx: str | None = None):
    """(files -> answers, model card) for the checkpoint or ONNX file the options name.

    Args:
        opts: ``ckpt_path`` and ``onnx`` (exactly one set).
        quality_model: the learned gate as a quality checkpoint (``--ckpt_path`` only).
        quality_onnx: or as that checkpoint's exported graph (either model).
    """
    if (opts.ckpt_path is None) == (opts.onnx is None):
        raise OptionError("drgrade serve needs exactly one of --ckpt_path FILE.ckpt or --onnx FILE.onnx")
    if quality_model is not None and (opts.onnx is not None or quality_onnx is not None):
        raise OptionError(
            "--quality_model gates a --ckpt_path model; with --onnx, pass the quality model exported "
            "(drgrade export --ckpt_path QUALITY.ckpt --out quality.onnx) as --quality_onnx"
        )
    from drgrade.serving.model_card import ModelCard, card_of_task
    from drgrade.serving.screening import screen_files, screen_files_onnx

    if opts.onnx is not None:
        from drgrade.serving.runner import OnnxGrader

        grader = OnnxGrader(opts.onnx, quality=quality_onnx)
        print(onnx_card_summary(grader.card))
        name = f"{grader.model or 'model'}, ONNX {Path(opts.onnx).name}"
        return partial(screen_files_onnx, grader), ModelCard.from_facts(
            grader.card, grader.rule, name, grader.dme_cut
        )
    from drgrade.predictions import checkpoint_label
    from drgrade.tasks import load_task

    task, origin = load_task(opts.ckpt_path).eval(), checkpoint_label(opts.ckpt_path)
    gate = learned_gate(quality_model, quality_onnx)
    grade = partial(screen_files, task, image_size=task.hparams.image_size, quality_model=gate, origin=origin)
    return grade, card_of_task(task, origin)


def learned_gate(quality_model: str | None, quality_onnx: str | None):
    """The quality model a checkpoint or an exported graph holds, loaded (None: neither given)."""
    if quality_onnx is not None:
        from drgrade.serving.runner import OnnxQualityModel

        return OnnxQualityModel(quality_onnx)
    if quality_model is not None:
        from drgrade.tasks.quality import QualityModel

        return QualityModel(quality_model)
    return None


def onnx_card_summary(card: dict | None) -> str:
    """The summary of an ONNX model's card, or why there is none (the card is the file's data)."""
    from drgrade.serving.card import card_summary

    if card is None:
        return "model card: none in this model (exported before drgrade wrote cards); use with care"
    try:
        return card_summary(card)
    except (KeyError, TypeError, ValueError, IndexError):
        return "model card: present but not readable; use with care"


def run(opts) -> None:
    """Load the model and serve the page until interrupted.

    Args:
        opts: the parsed options.
    """
    try:
        from drgrade.serving.app import MAX_UPLOAD, build_app
    except ImportError as error:
        raise MissingExtraError(
            f"drgrade serve needs the web-app extra ({error.name} is missing): pip install 'drgrade[app]'"
        ) from None
    grade, card = grader_of(opts, opts.quality_model, opts.quality_onnx)
    print(f"serving {card.name} on http://{opts.host}:{opts.port} (Ctrl+C stops)")
    # quiet: Gradio's own banner (and its share=True hint) would say less than the line above
    build_app(grade, card).launch(
        server_name=opts.host, server_port=opts.port, max_file_size=MAX_UPLOAD, quiet=True
    )
