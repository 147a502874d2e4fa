"""Start the screening web page for a checkpoint (needs ``pip install drgrade[app]``)."""

from __future__ import annotations

from functools import partial

from drgrade.errors import OptionError
from drgrade.tasks import load_task

MODEL_BOUND = True


def add_arguments(parser) -> None:
    """``--ckpt_path``, ``--host`` and ``--port``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--ckpt_path", type=str, required=True, help="checkpoint to serve (or last / best)")
    parser.add_argument(
        "--host", type=str, default="127.0.0.1", help="address to bind (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")


def run(cli) -> None:
    """Load the checkpoint and serve the page until interrupted.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    try:
        from drgrade.app import build_app
    except ImportError as error:
        raise OptionError(
            f"drgrade serve needs the web-app extra ({error.name} is missing): pip install 'drgrade[app]'"
        ) from None
    from drgrade.screening import screen_files

    opts = cli.options()
    task = load_task(opts.ckpt_path).eval()
    grade = partial(screen_files, task, image_size=cli.datamodule.hparams.image_size)
    print(f"serving {opts.ckpt_path} on http://{opts.host}:{opts.port} (Ctrl+C stops)")
    build_app(grade, task.display_name).launch(server_name=opts.host, server_port=opts.port)
