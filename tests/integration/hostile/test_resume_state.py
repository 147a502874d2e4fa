"""A resumed checkpoint may not steer what drgrade deletes (its saved paths are confined to the run)."""

from __future__ import annotations

import torch

from drgrade.cli import main
from tests.conftest import cli_args


def test_resumed_checkpoint_naming_files_outside_the_run_deletes_nothing(synthetic, tmp_path, recwarn):
    runs = tmp_path / "runs"
    main(cli_args("fit", "fcn_clip", synthetic, runs, "--trainer.max_epochs", "1"))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    checkpoint = torch.load(next(runs.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    next_run = runs / "version_1" / "checkpoints"  # where the resumed run will save
    crafted = str(next_run / ".." / ".." / ".." / "victim.txt")  # Lightning's textual check passes it
    for state in checkpoint["callbacks"].values():
        if "best_model_path" in state:
            state.update(
                dirpath=str(next_run),
                best_model_path=crafted,
                kth_best_model_path=crafted,
                last_model_path=crafted,
                best_k_models={crafted: torch.tensor(-1.0)},
                best_model_score=torch.tensor(-1.0),
                kth_value=torch.tensor(-1.0),
            )
    torch.save(checkpoint, tmp_path / "crafted.ckpt")

    main(
        cli_args(
            "fit",
            "fcn_clip",
            synthetic,
            runs,
            "--trainer.max_epochs",
            "3",
            "--ckpt_path",
            str(tmp_path / "crafted.ckpt"),
        )
    )

    assert victim.read_text() == "precious"
    assert any("outside this run's checkpoint folder" in str(w.message) for w in recwarn)
    assert (next_run / "last.ckpt").is_file()  # the resumed run still saves its own checkpoints

    recwarn.clear()  # an ordinary resume into a new run folder: quiet, and the old run keeps its files
    genuine = runs / "version_0" / "checkpoints" / "last.ckpt"
    main(
        cli_args("fit", "fcn_clip", synthetic, runs, "--trainer.max_epochs", "2", "--ckpt_path", str(genuine))
    )
    assert genuine.is_file() and not any("outside this run" in str(w.message) for w in recwarn)
