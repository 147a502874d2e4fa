"""reproduce runs the paper's protocol file, or a user's own with design: paper, from any folder."""

from __future__ import annotations

import csv

import pytest
import yaml

from drgrade.cli import main
from drgrade.errors import OptionError
from drgrade.protocols.spec import load_protocol
from tests.conftest import TINY


def test_the_papers_protocol_is_a_shipped_file():
    paper = load_protocol("paper")
    assert paper.design == "paper" and paper.models == ["zero_shot", "fcn_clip", "ranking"]
    assert paper.stages == ["fit", "test"] and paper.ensemble == ["fcn_clip", "ranking"]


@pytest.mark.parametrize(
    ("entries", "said"),
    [
        ({"models": ["zero_shot", "linear_probe"]}, "image models only"),
        ({"models": ["zero_shot"], "stages": ["test"]}, "stages must be"),
        ({"models": ["zero_shot", "fcn_clip"], "ensemble": ["fcn_clip", "ranking"]}, "not ['ranking']"),
        ({"design": "folds", "models": ["fcn_clip"], "ensemble": ["fcn_clip", "ranking"]}, "design: paper"),
    ],
)
def test_a_paper_protocol_that_cannot_run_is_refused_naming_the_key(tmp_path, entries, said):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"design": "paper", **entries}))
    with pytest.raises(OptionError, match=r"mine\.yaml") as error:
        load_protocol(path)
    assert said in str(error.value)


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
