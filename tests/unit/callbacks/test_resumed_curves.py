"""A fit resumed from ``--ckpt_path last`` has one training curve: the epochs it continued, then its own."""

import csv

import torch

from drgrade.callbacks.resume import join_curves


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)


def test_the_resumed_runs_curves_start_with_the_epochs_it_continued(tmp_path):
    first, resumed = tmp_path / "version_0", tmp_path / "version_1"
    write_rows(
        first / "metrics.csv",
        [
            {"epoch": "0", "step": "4", "train/loss": "2.0", "val/qwk": ""},
            {"epoch": "0", "step": "4", "train/loss": "", "val/qwk": "0.1"},
            {"epoch": "1", "step": "9", "train/loss": "1.5", "val/qwk": "0.3"},
            {"epoch": "2", "step": "11", "train/loss": "1.4", "val/qwk": ""},  # killed mid-epoch 2
        ],
    )
    (first / "checkpoints").mkdir()
    torch.save({"epoch": 1, "state_dict": {}}, first / "checkpoints" / "last.ckpt")
    write_rows(resumed / "metrics.csv", [{"epoch": "2", "step": "14", "train/loss": "1.2", "lr": "0.1"}])
    join_curves(first / "checkpoints" / "last.ckpt", resumed)
    with (resumed / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "4"), ("0", "4"), ("1", "9"), ("2", "14")]
    assert rows[2]["val/qwk"] == "0.3" and rows[3]["lr"] == "0.1" and rows[0]["lr"] == ""


def test_a_fit_that_did_not_resume_from_another_run_is_left_alone(tmp_path):
    write_rows(tmp_path / "version_0" / "metrics.csv", [{"epoch": "0", "step": "1"}])
    before = (tmp_path / "version_0" / "metrics.csv").read_text()
    join_curves(tmp_path / "version_0" / "checkpoints" / "last.ckpt", tmp_path / "version_0")
    assert (tmp_path / "version_0" / "metrics.csv").read_text() == before
