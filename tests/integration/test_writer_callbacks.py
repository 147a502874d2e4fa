"""The result writers are callbacks configured in configs/trainer.yaml: a config can leave one out."""

from __future__ import annotations

import yaml

from drgrade.cli import main
from tests.conftest import ROOT, cli_args


def test_writers_come_from_the_trainer_yaml_and_a_config_can_leave_one_out(
    synthetic, zero_shot_checkpoint, tmp_path
):
    """The shipped trainer.yaml lists every writer; an overlay listing only some writes only their files."""
    shipped = yaml.safe_load((ROOT / "configs" / "trainer.yaml").read_text())["callbacks"]
    listed = {entry["class_path"].rsplit(".", 1)[-1] for entry in shipped}
    assert {"EvaluationWriter", "PredictionWriter", "SplitWriter", "TrainingSummary"} <= listed
    assert "ValidationPredictionsWriter" in listed

    overlay = tmp_path / "only_metrics.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "callbacks": [
                        {"class_path": "drgrade.callbacks.EvaluationWriter", "init_args": {"figures": False}}
                    ]
                }
            }
        )
    )
    runs = tmp_path / "runs"
    checkpoint = ["--ckpt_path", str(zero_shot_checkpoint)]
    main(cli_args("validate", "zero_shot", synthetic, runs, "--config", str(overlay), *checkpoint))
    run = next(runs.glob("version_*"))
    assert (run / "metrics.json").is_file() and (run / "predictions.csv").is_file()
    assert not (run / "split.csv").exists()  # SplitWriter left out
    assert not (run / "confusion_matrix.png").exists()  # EvaluationWriter's figures: false
