"""``--ckpt_path best``: a candidate that cannot be read or scored is passed over by name."""

from __future__ import annotations

import shutil

import torch

from drgrade.runs import SCORE_KEY, SPLIT_KEY, SPLIT_SETTINGS, resolve_checkpoint
from tests.conftest import code_running_file


def test_bad_candidates_are_passed_over_and_named(zero_shot_checkpoint, tmp_path, capsys):
    root = tmp_path / "runs"
    good = root / "version_0" / "checkpoints" / "best-validated.ckpt"
    good.parent.mkdir(parents=True)
    shutil.copy(zero_shot_checkpoint, good)
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    assert checkpoint[SCORE_KEY]["value"] is not None
    bad = {}
    for version, change in enumerate(
        [
            {SCORE_KEY: {"monitor": "val/qwk", "mode": "max", "value": "0.99"}},  # a string score
            {SCORE_KEY: {"monitor": "val/qwk", "mode": "max", "value": True}},
            {SCORE_KEY: ["not", "a", "score"]},
            {SPLIT_KEY: ["a", "list"], SCORE_KEY: {"monitor": "val/qwk", "mode": "max", "value": 2.0}},
            {SCORE_KEY: {"monitor": "val/qwk", "mode": "sideways", "value": 2.0}},
        ],
        start=1,
    ):
        path = root / f"version_{version}" / "checkpoints" / "best-x.ckpt"
        path.parent.mkdir(parents=True)
        torch.save(checkpoint | change, path)
        bad[version] = path
    pickle = root / "version_9" / "checkpoints" / "best-pickle.ckpt"
    pickle.parent.mkdir(parents=True)
    code_running_file(pickle, tmp_path / "pwned")

    split = {key: checkpoint[SPLIT_KEY].get(key) for key in SPLIT_SETTINGS}
    assert resolve_checkpoint("best", root, split) == str(good)  # version 4's 2.0 is on no known split
    said = capsys.readouterr().out
    assert f"passed over {pickle}: not a readable checkpoint" in said
    for path in (bad[1], bad[2], bad[3], bad[5]):
        assert f"passed over {path}: no valid validation score" in said
    assert not (tmp_path / "pwned").exists()
