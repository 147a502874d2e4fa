"""``--out`` never replaces a device, pipe, link or one of the command's own inputs (issue: hostile files)."""

from __future__ import annotations

import os
import stat

import pytest

from drgrade.cli import main
from drgrade.errors import OutputError
from drgrade.files import atomic_write_text, check_writable
from tests.conftest import cli_args
from tests.integration.test_fail_safe import SANE, deploy, drgrade_metadata, fake_export

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")


def special_targets(tmp_path):
    """A FIFO, a socket-free set of non-regular entries, and links to them (all inside tmp_path)."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    targets = {"fifo": tmp_path / "fifo", "folder": tmp_path / "folder"}
    os.symlink(tmp_path / "fifo", tmp_path / "link_to_fifo")
    targets["link to a fifo"] = tmp_path / "link_to_fifo"
    (tmp_path / "regular.txt").write_text("kept")
    os.symlink(tmp_path / "regular.txt", tmp_path / "link_to_file")
    targets["link to a file"] = tmp_path / "link_to_file"
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        targets["device"] = tmp_path / "null"
    return targets


def test_no_writer_replaces_what_is_not_a_regular_file(tmp_path):
    for what, target in special_targets(tmp_path).items():
        before = os.lstat(target)
        with pytest.raises(OutputError, match="is a"):
            check_writable(target)
        with pytest.raises(OutputError):
            atomic_write_text(target, "results")  # every results file goes through this
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), what
    assert (tmp_path / "regular.txt").read_text() == "kept"


@needs_root
def test_deploy_out_dev_null_leaves_the_device_alone(one_photograph, tmp_path, capsys):
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(SystemExit) as exit_:
        deploy(model, one_photograph, node)
    assert exit_.value.code == 2 and "is a device" in capsys.readouterr().err
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_deploy_out_naming_one_of_the_photographs_is_refused(one_photograph, tmp_path, capsys):
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    photograph = one_photograph / "eye.png"
    original = photograph.read_bytes()
    for target in (photograph, model):
        with pytest.raises(SystemExit) as exit_:
            deploy(model, one_photograph, target)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "one of this command's inputs" in err and str(target) in err
    assert photograph.read_bytes() == original
    deploy(model, one_photograph, one_photograph / "new.csv")  # a new file beside them is fine


def test_export_out_naming_its_checkpoint_is_refused(zero_shot_checkpoint, synthetic, tmp_path, capsys):
    checkpoint = tmp_path / "m.ckpt"
    checkpoint.write_bytes(zero_shot_checkpoint.read_bytes())
    os.symlink(checkpoint, tmp_path / "alias.ckpt")
    for out in (checkpoint, tmp_path / "alias.ckpt"):
        with pytest.raises(SystemExit) as exit_:
            main(
                [
                    "export",
                    *cli_args("export", "zero_shot", synthetic, tmp_path / "runs")[1:],
                    "--ckpt_path",
                    str(checkpoint),
                    "--out",
                    str(out),
                ]
            )
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "one of this command's inputs" in err or "symbolic link" in err
    assert checkpoint.read_bytes() == zero_shot_checkpoint.read_bytes()


def test_predict_out_naming_a_photograph_it_grades_is_refused(
    zero_shot_checkpoint,
    synthetic,
    one_photograph,
    tmp_path,
    capsys,
):
    photograph = one_photograph / "eye.png"
    original = photograph.read_bytes()
    args = cli_args(
        "predict",
        "zero_shot",
        synthetic,
        tmp_path / "runs",
        "--ckpt_path",
        str(zero_shot_checkpoint),
        "--data.predict_dir",
        str(one_photograph),
        "--out",
        str(photograph),
    )
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "one of this command's inputs" in capsys.readouterr().err
    assert photograph.read_bytes() == original


def test_deploy_never_writes_its_exams_over_the_manifest_a_photograph_or_the_model(
    one_photograph, tmp_path, capsys
):
    model = fake_export(tmp_path / "r.exams.csv", SANE, drgrade_metadata())  # named as r.csv's exams would be
    manifest = tmp_path / "exams.csv"
    manifest.write_text("file,patient_id,eye,field\neye.png,p1,left,1\n")
    (one_photograph / "scan.exams.csv").write_text("a file among the photographs\n")
    kept = {p: p.read_bytes() for p in (model, manifest, one_photograph / "scan.exams.csv")}
    for out, extra in [
        (tmp_path / "predictions.csv", ["--manifest", str(manifest)]),  # its exams.csv is the manifest
        (manifest, ["--manifest", str(manifest)]),  # the predictions themselves
        (one_photograph / "scan.csv", []),  # scan.exams.csv is in the folder graded
        (tmp_path / "r.csv", []),  # r.exams.csv is the model
    ]:
        with pytest.raises(SystemExit) as exit_:
            deploy(model, one_photograph, out, *extra)
        assert exit_.value.code == 2 and "one of this command's inputs" in capsys.readouterr().err, out
        assert not (tmp_path / "predictions.csv").exists()  # refused before anything was graded
    assert all(path.read_bytes() == content for path, content in kept.items())


def test_predict_out_naming_its_exam_manifest_is_refused(
    zero_shot_checkpoint, synthetic, one_photograph, tmp_path, capsys
):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,patient_id,eye,field\neye.png,p1,left,1\n")
    args = cli_args(
        "predict", "zero_shot", synthetic, tmp_path / "runs",
        "--ckpt_path", str(zero_shot_checkpoint), "--data.predict_dir", str(one_photograph),
        "--data.exam_manifest", str(manifest), "--out", str(manifest),
    )  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "one of this command's inputs" in capsys.readouterr().err
    assert manifest.read_text() == "file,patient_id,eye,field\neye.png,p1,left,1\n"
