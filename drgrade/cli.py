"""``drgrade``: LightningCLI (fit, validate, test, predict) plus the project's own verbs.

``main(args=None)`` is the single entry point used by the console script, ``python -m drgrade``
and the tests, so what the tests exercise is exactly what users run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from drgrade import __version__
from drgrade.data import DRDataModule
from drgrade.data.sources import DataValidationError
from drgrade.models.clip_backbone import BackboneWeightsError
from drgrade.runs import resolve_checkpoint
from drgrade.tasks import BaseTask

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")
#: Errors whose message already says what to do: shown without a traceback.
USER_ERRORS = (DataValidationError, BackboneWeightsError, FileNotFoundError)


class DRGradeCLI(LightningCLI):
    """LightningCLI with the data's image size linked into the model and a guard for fit."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.image_size", "model.init_args.image_size")

    def before_fit(self) -> None:
        if not type(self.model).trainable:
            raise SystemExit(
                f"drgrade: {type(self.model).__name__} has nothing to train. "
                "Use `drgrade validate` or `drgrade test` with the same config."
            )
        self._resolve_checkpoint()

    def before_validate(self) -> None:
        self._resolve_checkpoint()

    def before_test(self) -> None:
        self._resolve_checkpoint()

    def before_predict(self) -> None:
        self._resolve_checkpoint()

    def _resolve_checkpoint(self) -> None:
        """``--ckpt_path last`` / ``best``: the newest such checkpoint of earlier runs of this config."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path"):
            config["ckpt_path"] = resolve_checkpoint(config["ckpt_path"], self.trainer.default_root_dir)


def run_lightning(args: list[str] | None) -> DRGradeCLI:
    return DRGradeCLI(
        BaseTask,
        DRDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


def synth(argv: list[str]) -> None:
    """``drgrade synth``: write the synthetic APTOS / Messidor-2 folders."""
    from drgrade.data.synthetic import write_synthetic

    parser = argparse.ArgumentParser(prog="drgrade synth", description=synth.__doc__)
    parser.add_argument("--out", required=True, help="folder to write aptos2019/ and messidor2/ into")
    parser.add_argument("--num-aptos", type=int, default=600)
    parser.add_argument("--num-messidor", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=384, help="image height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    aptos, messidor = write_synthetic(opts.out, opts.num_aptos, opts.num_messidor, opts.image_size, opts.seed)
    print(f"wrote {aptos} and {messidor}")


def report(argv: list[str]) -> None:
    """``drgrade report``: Table 3 and Table 4 (Markdown, CSV) and confusion matrices from run folders."""
    from drgrade.evaluation.report import write_report

    parser = argparse.ArgumentParser(prog="drgrade report", description=report.__doc__)
    parser.add_argument("runs", nargs="+", help="run directories holding metrics.json (from drgrade test)")
    parser.add_argument("--out", default="reports", help="folder for table3/table4 .md/.csv and figures")
    parser.add_argument("--paper", action="store_true", help="add the paper's published numbers")
    opts = parser.parse_args(argv)
    print(write_report(opts.runs, opts.out, with_paper=opts.paper))
    print(f"report written to {opts.out}/")


def reproduce(argv: list[str]) -> None:
    """``drgrade reproduce``: the paper's protocol (every model, fit + test, report); --demo: synthetic."""
    from drgrade.reproduce import reproduce as run_protocol

    parser = argparse.ArgumentParser(prog="drgrade reproduce", description=reproduce.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder holding aptos2019/ and/or messidor2/")
    source.add_argument("--demo", action="store_true", help="synthetic data with configs/demo.yaml")
    parser.add_argument("--configs", type=Path, default=Path("configs"))
    parser.add_argument("--out", type=Path, default=None, help="report folder (default reports/<demo|paper>)")
    parser.add_argument("--paper", action="store_true", help="add the paper's published numbers")
    opts = parser.parse_args(argv)
    out = opts.out or Path("reports") / ("demo" if opts.demo else "paper")
    print(run_protocol(None if opts.demo else opts.data, opts.configs, out, opts.paper))
    print(f"report written to {out}/")


def cache(argv: list[str]) -> None:
    """``drgrade cache``: preprocess every image of the configured data into the cache now."""
    parser = argparse.ArgumentParser(
        prog="drgrade cache",
        description=cache.__doc__,
        epilog="Other options (--config, --data.*) are those of `drgrade fit`.",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    opts, rest = parser.parse_known_args(argv)
    cli = configured(rest)
    count = cli.datamodule.build_cache(opts.workers)
    print(f"{count} images cached in {cli.datamodule.cache.root}")


def export(argv: list[str]) -> None:
    """``drgrade export``: a trained checkpoint as ONNX (normalised image -> probabilities, grade)."""
    from drgrade.export import export_onnx
    from drgrade.tasks import load_task

    parser = argparse.ArgumentParser(
        prog="drgrade export",
        description=export.__doc__,
        epilog="Other options (--config, --data.*) are those of `drgrade test`.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint to export (or last / best)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    opts, rest = parser.parse_known_args(argv)
    cli = configured(rest)
    path = resolve_checkpoint(opts.ckpt_path, cli.trainer.default_root_dir)
    written = export_onnx(load_task(path), opts.out, cli.datamodule.hparams.image_size)
    print(f"exported {path} to {written}; grade images with: python -m drgrade.deploy {written} DIR")


def configured(args: list[str]) -> DRGradeCLI:
    """Model, datamodule and trainer from config arguments, without running a Lightning verb."""
    return DRGradeCLI(
        BaseTask,
        DRDataModule,
        subclass_mode_model=True,
        run=False,
        args=args,
        save_config_callback=None,
        auto_configure_optimizers=False,
    )


def explain(argv: list[str]) -> None:
    """``drgrade explain``: attention overlays, comparison sheet and lesion-mass scores."""
    from drgrade.explain import explain as run_explain

    run_explain(argv)


EXTRA_VERBS: dict[str, Callable[[list[str]], None]] = {
    "synth": synth,
    "report": report,
    "reproduce": reproduce,
    "explain": explain,
    "cache": cache,
    "export": export,
}


def overview() -> str:
    verbs = "\n".join(f"  {v:<10}Lightning {v} (see `drgrade {v} --help`)" for v in LIGHTNING_VERBS)
    extra = "\n".join(
        f"  {v:<10}{(f.__doc__ or '').split(':', 1)[-1].strip()}" for v, f in EXTRA_VERBS.items()
    )
    return (
        f"usage: drgrade [--version] [--help] <command> [options]\n\n"
        f"Diabetic retinopathy grading with CLIP (drgrade {__version__}).\n\ncommands:\n{verbs}\n{extra}\n\n"
        "example: drgrade fit --config configs/fcn_clip.yaml --config configs/demo.yaml"
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return
    if args[0] == "--version":
        print(f"drgrade {__version__}")
        return
    try:
        if args[0] in EXTRA_VERBS:
            EXTRA_VERBS[args[0]](args[1:])
        else:
            # LightningCLI reads sys.argv itself when args is None (and warns if given both)
            run_lightning(None if argv is None else args)
    except USER_ERRORS as error:
        print(f"drgrade: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
