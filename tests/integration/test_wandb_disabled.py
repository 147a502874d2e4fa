"""``WANDB_MODE=disabled`` turns W&B off with the shipped configs: no W&B logger, no offline run."""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger, WandbLogger

from drgrade.commands.lightning import DRGradeCLI
from tests.conftest import ROOT


def shipped(tmp_path) -> DRGradeCLI:
    """The shipped zero-shot config (W&B offline: true) with a tiny random backbone, only instantiated."""
    return DRGradeCLI(
        [
            "--config",
            str(ROOT / "configs" / "zero_shot.yaml"),
            "--model.init_args.backbone",
            "RN-tiny",
            "--model.init_args.pretrained",
            "null",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        run=False,
    )


def test_disabled_leaves_the_wandb_logger_out(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = shipped(tmp_path).trainer.loggers
    assert not any(isinstance(logger, WandbLogger) for logger in loggers)
    assert any(isinstance(logger, CSVLogger) for logger in loggers)  # the run folder is still written


def test_offline_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert any(isinstance(logger, WandbLogger) for logger in shipped(tmp_path).trainer.loggers)
