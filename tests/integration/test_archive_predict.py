"""Grading an archive: per-process shards merged into one file, and a killed run resumed.

The killed run is a real ``kill -9``: a subprocess ``drgrade predict`` with a callback that sends
SIGKILL to its own process after a few batches (``tests.integration.killer.KillAfterBatches``, passed as
any user callback is, ``--trainer.callbacks+=...``). Two-process DDP runs as its own process too (Lightning's
launcher re-runs the command line for rank 1).
"""

from __future__ import annotations

import csv
import json
import signal
import warnings
from collections import Counter
from pathlib import Path

import pytest

from drgrade.cli import main
from drgrade.shards import Result, ShardStore
from tests.conftest import ROOT, cli_args
from tests.integration.test_ddp import run_drgrade

BATCH = 16


def predict_args(synthetic, root, checkpoint, *extra):
    return cli_args(
        "predict",
        "zero_shot",
        synthetic,
        root,
        "--ckpt_path",
        str(checkpoint),
        "--data.predict_dir",
        str(synthetic / "aptos2019" / "train_images"),
        "--data.batch_size",
        str(BATCH),
        *extra,
    )


def newest_rows(root: Path) -> list[dict]:
    newest = max(root.rglob("predictions.csv"), key=lambda p: p.stat().st_mtime_ns)
    with newest.open(newline="") as f:
        return list(csv.DictReader(f))


def shard_lines(root: Path) -> list[dict]:
    """Every row line of every shard under ``root`` (torn or not)."""
    return [
        json.loads(line)["row"]
        for shard in root.glob("shards/*/rank-*.jsonl")
        for line in shard.read_text().splitlines()
        if line.startswith('{"row"')
    ]


@pytest.fixture(scope="module")
def uninterrupted(synthetic, zero_shot_checkpoint, tmp_path_factory) -> list[dict]:
    """The rows of one uninterrupted single-process run."""
    root = tmp_path_factory.mktemp("uninterrupted")
    main(predict_args(synthetic, root, zero_shot_checkpoint))
    return newest_rows(root)


def test_a_killed_predict_resumes_and_grades_each_photograph_once(
    synthetic, zero_shot_checkpoint, uninterrupted, tmp_path, capsys
):
    args = predict_args(synthetic, tmp_path, zero_shot_checkpoint)
    killer = "--trainer.callbacks+=tests.integration.killer.KillAfterBatches"
    killed = run_drgrade(*args, killer, "--trainer.callbacks.batches", "5", cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not list(tmp_path.rglob("predictions.csv"))
    assert len(shard_lines(tmp_path)) == 4 * BATCH  # the 5th batch died before its writer ran
    main(args)  # the same command again
    assert "resuming: 64 of 180 photographs" in capsys.readouterr().out
    assert newest_rows(tmp_path) == uninterrupted
    graded = Counter(row["digest"] for row in shard_lines(tmp_path))
    assert len(graded) == 180 and set(graded.values()) == {1}  # each photograph graded once
    main(args)  # once more: nothing is left to grade, and the file is written all the same
    assert "resuming: 180 of 180 photographs" in capsys.readouterr().out
    assert newest_rows(tmp_path) == uninterrupted and len(shard_lines(tmp_path)) == 180


@pytest.mark.slow
def test_two_processes_write_the_file_one_process_writes(
    synthetic, zero_shot_checkpoint, uninterrupted, tmp_path
):
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    done = run_drgrade(*predict_args(synthetic, tmp_path, zero_shot_checkpoint, *ddp), cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert newest_rows(tmp_path) == uninterrupted  # input order, each photograph once, no padding
    shards = sorted(p.name for p in tmp_path.glob("shards/*/rank-*.jsonl"))
    assert shards == ["rank-0.jsonl", "rank-1.jsonl"]
    assert sorted(Counter(r["digest"] for r in shard_lines(tmp_path)).values()) == [1] * 180


def result(identity: str, digest: str = "d") -> Result:
    return Result(identity, digest, "", None, [1.0, float("nan")], ("P", "left", ""))


def test_a_torn_block_is_ignored_and_later_blocks_are_read(tmp_path):
    store = ShardStore(tmp_path, {"checkpoint": "a.ckpt sha256:1"})
    store.append(0, [result("one"), result("two")])
    with store.shard(0).open("a") as f:
        f.write('{"row": {"identity": "three", "digest": "d", "err')  # killed inside a block
    store.append(0, [result("four")])
    found = store.results()
    assert [r.identity for r in found] == ["one", "two", "four"]
    assert found[0].exam == ("P", "left", "") and found[0].quality[0] == 1.0


def test_a_shard_of_another_model_is_not_read(tmp_path):
    ShardStore(tmp_path, {"checkpoint": "a.ckpt sha256:1"}).append(0, [result("one")])
    other = ShardStore(tmp_path, {"checkpoint": "a.ckpt sha256:2"})
    assert other.folder != ShardStore(tmp_path, {"checkpoint": "a.ckpt sha256:1"}).folder
    assert other.results() == []
    other.folder.mkdir(parents=True)  # a shard copied into the wrong folder: its header says whose it is
    ShardStore(tmp_path, {"checkpoint": "a.ckpt sha256:1"}).shard(0).replace(other.shard(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert other.results() == []
    assert "another model" in str(caught[0].message)
