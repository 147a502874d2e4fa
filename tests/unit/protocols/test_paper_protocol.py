"""The paper's protocol is a shipped file (design: paper); one that cannot run is refused naming the key."""

from __future__ import annotations

import pytest
import yaml

from drgrade.errors import OptionError
from drgrade.protocols.spec import load_protocol


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
