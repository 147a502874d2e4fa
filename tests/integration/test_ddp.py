"""Two-process DDP evaluation on CPU (gloo), run through the CLI in a subprocess.

Lightning's DDP launcher re-runs the command line for rank 1; inside pytest that would re-run
the test session, so the CLI runs as its own process (Lightning re-launches sys.argv for the other ranks).
"""

import json
import os
import subprocess
import sys

import pytest

from drgrade.cli import main
from tests.conftest import cli_args


def run_drgrade(*args: str, cwd) -> subprocess.CompletedProcess:
    """``python -m drgrade ARGS`` as its own process (W&B off), its output captured."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "drgrade", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def drgrade(*args: str, cwd) -> None:
    done = run_drgrade(*args, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_ddp_evaluation_metrics_equal_single_process(synthetic, tmp_path):
    def args(verb, root, *extra):
        return cli_args(verb, "fcn_clip", synthetic, root, "--trainer.max_epochs", "1", *extra)

    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    # the checkpoint comes from a single-process fit: the DDP launch that matters here is the
    # evaluation (metrics gathered across ranks, padding repeats removed, split guard, run folder)
    main(args("fit", tmp_path / "fit"))
    checkpoint = next((tmp_path / "fit").glob("version_0/checkpoints/best-*.ckpt"))
    main(args("test", tmp_path / "single", "--ckpt_path", str(checkpoint)))
    drgrade(*args("test", tmp_path / "multi", "--ckpt_path", str(checkpoint), *ddp), cwd=tmp_path)
    single = json.loads((tmp_path / "single" / "version_0" / "metrics.json").read_text())
    multi = json.loads((tmp_path / "multi" / "version_0" / "metrics.json").read_text())
    assert multi["metrics"]["num_images"] == single["metrics"]["num_images"]  # padding repeats removed
    assert multi["confusion_matrix"] == single["confusion_matrix"]
    for key, value in single["metrics"].items():
        assert multi["metrics"][key] == pytest.approx(value, abs=1e-5), key
