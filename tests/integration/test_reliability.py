"""Untrusted files and bad inputs: each case exits 2 with its cause named and changes no file."""

import pickle
import subprocess
import sys

import pytest
import torch

from drgrade.cli import main
from drgrade.errors import CheckpointError
from drgrade.tasks import load_task
from tests.conftest import ROOT, cli_args, code_running_file, ensemble_args


def crafted_checkpoint(path, marker):
    return code_running_file(path, marker, drgrade_task="FCNCLIP")


def test_crafted_checkpoint_runs_no_code_through_load_task(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="refused"):
        load_task(crafted_checkpoint(tmp_path / "evil.ckpt", marker))
    assert not marker.exists()


@pytest.mark.parametrize("verb", ["test", "predict", "validate", "export"])
def test_crafted_checkpoint_refused_by_every_verb(verb, synthetic, tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    extra = ["--out", str(tmp_path / "m.onnx")] if verb == "export" else []
    with pytest.raises(SystemExit) as exit_:
        main(cli_args(verb, "fcn_clip", synthetic, tmp_path / "runs", "--ckpt_path", str(ckpt), *extra))
    assert exit_.value.code == 2 and "refused" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_checkpoint_naming_a_foreign_class_is_refused(tmp_path):
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "drgrade_task": "evilmod:Thing"}, path)
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w')\n")
    with pytest.raises(CheckpointError, match="not a drgrade task"):
        load_task(path)
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", pickle.dumps([1, 2])])
def test_garbage_or_missing_checkpoint_exits_2_before_reading_data(content, synthetic, tmp_path, capsys):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    for ckpt in (path, tmp_path / "missing.ckpt"):
        with pytest.raises(SystemExit) as exit_:
            main(cli_args("test", "fcn_clip", synthetic, tmp_path / "runs", "--ckpt_path", str(ckpt)))
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and str(ckpt) in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def test_negative_learning_rate_is_named(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(cli_args("fit", "fcn_clip", synthetic, tmp_path, "--model.init_args.lr", "-1"))
    assert exit_.value.code == 2 and "model.init_args.lr" in capsys.readouterr().err


def test_deploy_lists_dangling_links(tmp_path):
    from drgrade.data.images import list_images

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    found, skipped = list_images(tmp_path)
    assert found == [] and skipped == [(tmp_path / "a" / "gone.png", "dangling symbolic link")]


def test_error_has_no_traceback_in_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "drgrade.deploy", str(tmp_path / "missing.onnx"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "missing.onnx" in result.stderr and "Traceback" not in result.stderr


def test_synth_refuses_a_non_empty_destination(tmp_path, capsys):
    real = tmp_path / "aptos2019"
    real.mkdir()
    (real / "train.csv").write_text("id_code,diagnosis\nreal,2\n")
    args = ["synth", "--out", str(tmp_path), "--num_aptos", "10", "--num_messidor", "8", "--image_size", "48"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "--force" in capsys.readouterr().err
    assert (real / "train.csv").read_text() == "id_code,diagnosis\nreal,2\n"
    main([*args, "--force"])
    assert "real," not in (real / "train.csv").read_text()


def checkpoint_epoch(path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def test_last_checkpoint_follows_every_epoch_not_the_best(synthetic, tmp_path):
    # lr 0: validation QWK never improves after epoch 0, so only epoch 0 is "best"
    args = ["--trainer.max_epochs", "3", "--model.init_args.lr", "0", "--model.init_args.image_lr", "0"]
    main(cli_args("fit", "fcn_clip", synthetic, tmp_path, *args))
    checkpoints = tmp_path / "version_0" / "checkpoints"
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-epoch=00.ckpt"]
    assert checkpoint_epoch(checkpoints / "last.ckpt") == 2
    assert not list(checkpoints.glob("*.tmp")) and not list(checkpoints.glob(".*"))


def test_kill_9_then_resume_loses_at_most_the_epoch_in_progress(synthetic, tmp_path):
    import csv
    import signal
    import time

    command = [sys.executable, "-m", "drgrade", *cli_args("fit", "fcn_clip", synthetic, tmp_path)]
    process = subprocess.Popen(
        [*command, "--trainer.max_epochs", "100"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    try:
        while not (last.is_file() and checkpoint_epoch(last) >= 1):
            assert time.monotonic() < deadline and process.poll() is None, "fit never reached epoch 1"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = checkpoint_epoch(last)  # epochs 0..saved are safe; saved + 1 was in progress
    main(
        [
            *cli_args("fit", "fcn_clip", synthetic, tmp_path),
            "--trainer.max_epochs",
            str(saved + 2),
            "--ckpt_path",
            "last",
        ]
    )
    resumed = tmp_path / "version_1"
    rows = list(csv.DictReader((resumed / "metrics.csv").read_text().splitlines()))
    validated = [int(row["epoch"]) for row in rows if row.get("val/qwk")]
    # one curve: the finished epochs joined from the killed run, then right after the last of them
    assert validated == list(range(saved + 2))


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--data.split_ratios", "[0.5,0.5,0.5]", "data.split_ratios"),
        ("--data.split_ratios", "[-0.1,0.6,0.5]", "data.split_ratios"),
        ("--data.target_counts", "[0,0,0,0,0]", "data.target_counts"),
        ("--model.init_args.pretrained", "/no/such/weights.pt", "--model.init_args.pretrained"),
    ],
)
def test_bad_option_values_are_named(option, value, named, synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(cli_args("test", "zero_shot", synthetic, tmp_path / "runs", option, value))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and named in err and "Does not validate" not in err


def test_cache_dir_that_is_a_file(synthetic, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_:
        main(
            cli_args(
                "test", "zero_shot", synthetic, tmp_path / "runs", "--data.cache_dir", str(tmp_path / "file")
            )
        )
    assert exit_.value.code == 2 and "data.cache_dir" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "x"


def test_ensemble_without_or_with_bad_members(synthetic, tmp_path, capsys):
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    for members, named in (("[]", "at least one checkpoint"), (f"[{tmp_path / 'bad.ckpt'}]", "bad.ckpt")):
        args = ensemble_args("test", synthetic, tmp_path / "runs", members)
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_header_only_csv_is_named(tmp_path, capsys):
    from drgrade.data.sources.csv import read as read_csv_source
    from drgrade.errors import DataValidationError

    (tmp_path / "s.csv").write_text("path,grade\n")
    with pytest.raises(DataValidationError, match="no data rows"):
        read_csv_source(tmp_path / "s.csv")


@pytest.mark.parametrize("model", ["missing", "empty", "garbage"])
def test_deploy_refuses_a_bad_model_file(model, tmp_path, capsys):
    from drgrade.serving.runner import main as deploy_main

    path = tmp_path / "m.onnx"
    if model != "missing":
        path.write_bytes(b"" if model == "empty" else b"not onnx at all")
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit) as exit_:
        deploy_main([str(path), str(tmp_path / "images"), "--out", str(tmp_path / "p.csv")])
    assert exit_.value.code == 2 and str(path) in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_make_clean_keeps_trained_runs_and_reports():
    dry = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "rm -rf" in dry and "runs" not in dry.split() and "reports" not in dry.split()
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "keeps runs/, reports/" in listed and "clean-runs" in listed
