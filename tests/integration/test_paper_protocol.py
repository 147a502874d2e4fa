"""reproduce runs a user's own protocol file with design: paper, from a folder with no checkout."""

from __future__ import annotations

import csv

import yaml

from drgrade.cli import main
from tests.conftest import TINY


def test_a_users_zero_shot_only_protocol_runs_from_another_folder(synthetic, tmp_path, monkeypatch, capsys):
    """No checkout in the working folder: the model configs and the protocol come with the package."""
    protocol = tmp_path / "zero_only.yaml"
    protocol.write_text(yaml.safe_dump({"design": "paper", "models": ["zero_shot"], "ensemble": []}))
    monkeypatch.chdir(tmp_path)
    main(
        [
            "reproduce",
            "--protocol",
            str(protocol),
            "--data",
            str(synthetic),
            "--config",
            str(TINY),
            "--model.init_args.bootstrap_resamples",
            "0",
            "--model.init_args.template_sets",
            "[clinical]",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["zero_shot"]  # no other model ran
    runs = sorted((tmp_path / "runs" / "zero_shot").glob("version_*"))
    assert len(runs) == 2 and (runs[0] / "checkpoints" / "best-validated.ckpt").is_file()  # fit, test
    table3 = list(csv.reader((tmp_path / "reports" / "zero_only" / "table3.csv").read_text().splitlines()))
    assert table3[0] == ["Metric", "Zero-shot [test, argmax]"]
    assert "report written to reports/zero_only/" in capsys.readouterr().out
