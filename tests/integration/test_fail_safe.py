"""Fail safe: no file handed to drgrade runs code (checkpoints, weights files)."""

from __future__ import annotations

import os
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch

from drgrade.cli import main
from drgrade.errors import CheckpointError, WeightsFileError
from drgrade.models.backbones.openclip import create_clip, register_tiny_configs
from drgrade.tasks import load_task
from tests.conftest import cli_args, code_running_file, ensemble_args


@pytest.fixture
def pointing_checkpoint(zero_shot_checkpoint, tmp_path):
    """A real zero-shot checkpoint whose recorded ``pretrained`` names a code-running pickle beside it."""
    marker = tmp_path / "pwned"
    payload = code_running_file(tmp_path / "weights.pt", marker)
    checkpoint = torch.load(zero_shot_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["pretrained"] = str(payload)
    path = tmp_path / "pointing.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def test_a_checkpoint_naming_a_weights_file_makes_drgrade_read_none(pointing_checkpoint, synthetic, tmp_path):
    path, marker = pointing_checkpoint
    from drgrade.commands.serve import grader_of

    load_task(path)
    grader_of(SimpleNamespace(ckpt_path=str(path), onnx=None))  # drgrade serve --ckpt_path
    ckpt = ["--ckpt_path", str(path)]
    main(
        [
            *cli_args("export", "zero_shot", synthetic, tmp_path / "e", *ckpt),
            "--out",
            str(tmp_path / "m.onnx"),
        ]
    )
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(next((synthetic / "aptos2019" / "train_images").iterdir()), images / "a.png")
    main(
        cli_args("predict", "zero_shot", synthetic, tmp_path / "p", *ckpt, "--data.predict_dir", str(images))
    )
    main(
        [
            *cli_args("explain", "zero_shot", synthetic, tmp_path / "x"),
            "--out",
            str(tmp_path / "explain"),
            "--compare",
            str(path),
            "--limit",
            "2",
        ]
    )
    main(ensemble_args("fit", synthetic, tmp_path / "ens", f"[{path}]"))  # as an ensemble member
    assert not marker.exists()


def test_rebuilt_model_equals_the_checkpoint_without_its_weights_file(
    pointing_checkpoint, zero_shot_checkpoint
):
    path, _ = pointing_checkpoint
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(load_task(path).eval()(images), load_task(zero_shot_checkpoint).eval()(images))


def test_a_weights_file_on_the_command_line_is_read_as_tensors_only(synthetic, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = code_running_file(tmp_path / "RN50.pt", marker)
    with pytest.raises(WeightsFileError, match="refused"):
        create_clip("RN-tiny", str(payload), 96)
    with pytest.raises(SystemExit) as exit_:
        main(
            cli_args(
                "test", "zero_shot", synthetic, tmp_path / "r", "--model.init_args.pretrained", str(payload)
            )
        )
    assert exit_.value.code == 2 and "refused" in capsys.readouterr().err
    assert not marker.exists()


def _tiny_reference():
    torch.manual_seed(3)
    register_tiny_configs()
    return open_clip.create_model("RN-tiny", pretrained=None, force_quick_gelu=True)


@pytest.mark.parametrize("form", ["torchscript", "state_dict", "lightning", "safetensors"])
def test_every_weights_format_loads_the_same_tensors(form, tmp_path):
    reference = _tiny_reference()
    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "torchscript":  # OpenAI's RN50.pt is a traced TorchScript archive
        with (
            warnings.catch_warnings()
        ):  # tracing is deprecated and warns about Python branches: irrelevant here
            warnings.simplefilter("ignore")
            traced = torch.jit.trace_module(
                reference, {"encode_image": torch.randn(1, 3, 64, 64)}, check_trace=False
            )
        traced.save(path)
    elif form == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    else:
        state = reference.state_dict()
        torch.save(
            {"state_dict": {f"module.{k}": v for k, v in state.items()}} if form == "lightning" else state,
            path,
        )
    loaded = create_clip("RN-tiny", str(path), None)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_weights_of_another_architecture_are_named(tmp_path):
    torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsFileError, match="does not hold RN-tiny CLIP weights"):
        create_clip("RN-tiny", str(tmp_path / "other.pt"), 96)


# -- broken models must not grade ---------------------------------------------------------------
def broken_checkpoint(source, path, **state):
    checkpoint = torch.load(source, weights_only=True)
    for name, value in state.items():
        checkpoint["state_dict"][f"rule.{name}"] = torch.as_tensor(value, dtype=torch.float)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(
    "state",
    [
        {"temperature": 0.0},
        {"temperature": float("nan")},
        {"temperature": -1.0},
        {"thresholds": [0.2, float("nan"), 0.2, 0.2, 0.2]},
        {"thresholds": [0.2, 0.2, 0.2]},
        {"operating_cuts": [1.5, float("nan"), float("nan"), float("nan")]},
        {"uncertainty_cutoff": float("nan")},
    ],
)
def test_a_checkpoint_with_a_broken_decision_rule_is_refused_naming_it(
    state, zero_shot_checkpoint, synthetic, tmp_path, capsys
):
    from drgrade.commands.serve import grader_of

    path = broken_checkpoint(zero_shot_checkpoint, tmp_path / "broken.ckpt", **state)
    with pytest.raises(SystemExit) as exit_:
        main(cli_args("test", "zero_shot", synthetic, tmp_path / "runs", "--ckpt_path", str(path)))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and str(path) in err and "decision rule is broken" in err
    with pytest.raises(CheckpointError, match="decision rule is broken"):
        grader_of(SimpleNamespace(ckpt_path=str(path), onnx=None))  # the web page refuses it too
    assert not (tmp_path / "runs").exists()


def fake_export(path, outputs: dict, metadata: dict, size=64, extra_nodes=(), probabilities_width=5):
    """An ONNX file with drgrade's input and output names whose outputs are the given constants per image."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0, axes=[1, 2, 3]),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Unsqueeze", ["nothing", "axis1"], ["column"]),
        *extra_nodes,
    ]
    types = {
        "probabilities": TensorProto.FLOAT,
        "grade": TensorProto.INT64,
        "p_referable": TensorProto.FLOAT,
        "referable_by_grade": TensorProto.BOOL,
        "referable_by_score": TensorProto.BOOL,
        "uncertainty": TensorProto.DOUBLE,
        "refer_to_grader": TensorProto.BOOL,
    }
    initialisers = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    graph_outputs = []
    for name, value in outputs.items():
        row = np.atleast_1d(np.asarray(value, np.float32))
        initialisers.append(
            helper.make_tensor(f"{name}_value", TensorProto.FLOAT, list(row.shape), row.tolist())
        )
        if name == "probabilities":
            nodes.append(helper.make_node("Add", ["column", f"{name}_value"], [f"{name}_float"]))
            width = [probabilities_width]
        else:
            nodes.append(helper.make_node("Add", ["nothing", f"{name}_value"], [f"{name}_float"]))
            width = []
        nodes.append(helper.make_node("Cast", [f"{name}_float"], [name], to=types[name]))
        graph_outputs.append(helper.make_tensor_value_info(name, types[name], ["batch", *width]))
    graph = helper.make_graph(
        nodes,
        "fake",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        graph_outputs,
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def drgrade_metadata(size=64, **changes):
    import json

    from drgrade.decision.rule import DecisionRule

    rule = DecisionRule("none").describe()
    meta = {
        "drgrade_model": "FCNCLIP",
        "image_size": str(size),
        "mean": json.dumps([0.48, 0.46, 0.41]),
        "std": json.dumps([0.27, 0.26, 0.28]),
        "grade_names": json.dumps(["No DR", "Mild", "Moderate", "Severe", "Proliferative"]),
        "decision_rule": json.dumps(rule),
    }
    return meta | changes


SANE = {
    "probabilities": [0.1, 0.1, 0.6, 0.1, 0.1],
    "grade": 2.0,
    "p_referable": 0.8,
    "referable_by_grade": 1.0,
    "referable_by_score": 1.0,
    "uncertainty": 1.2,
    "refer_to_grader": 0.0,
}


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"probabilities": [float("nan")] * 5}, "not finite"),
        ({"probabilities": [-0.2, 0.3, 0.5, 0.2, 0.2]}, "not a distribution"),
        ({"probabilities": [0.1, 0.1, 0.1, 0.1, 0.1]}, "not a distribution"),
        ({"grade": 7.0}, "grade 7"),
        ({"grade": -1.0}, "grade -1"),
        ({"grade": 0.0}, "not its decision rule's"),  # valid probabilities, but not what the rule decides
    ],
)
def test_an_onnx_output_that_is_not_a_decision_gives_an_error_and_no_grade(
    change, said, one_photograph, tmp_path
):
    import csv

    from drgrade.serving.runner import main as deploy_main

    model = fake_export(tmp_path / "m.onnx", SANE | change, drgrade_metadata())
    with pytest.raises(SystemExit) as exit_:  # nothing could be graded: exit 2, the CSV says why
        deploy_main([str(model), str(one_photograph), "--out", str(tmp_path / "p.csv"), "--workers", "0"])
    assert exit_.value.code == 2
    (row,) = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert row["grade"] == "" and row["referable_by_score"] == "" and said in row["error"], row["error"]
    good = fake_export(tmp_path / "good.onnx", SANE, drgrade_metadata())
    deploy_main([str(good), str(one_photograph), "--out", str(tmp_path / "q.csv"), "--workers", "0"])
    assert "Moderate" in (tmp_path / "q.csv").read_text()  # the same file with a sane output grades


@pytest.mark.parametrize(
    ("metadata", "said"),
    [
        (drgrade_metadata(image_size="100000"), "image_size 100000"),
        (drgrade_metadata(image_size="8"), "image_size 8"),
        (drgrade_metadata(std="[0.27, 0.0, 0.28]"), "std"),
        (drgrade_metadata(grade_names='["a", "b", "c", "d", "e"]'), "grade_names"),
        ({k: v for k, v in drgrade_metadata().items() if k != "decision_rule"}, "no drgrade metadata"),
    ],
)
def test_onnx_metadata_out_of_bounds_is_refused_before_anything_is_allocated(metadata, said, tmp_path):
    from drgrade.errors import ModelFileError
    from drgrade.serving.runner import OnnxGrader

    with pytest.raises(ModelFileError, match=said):
        OnnxGrader(fake_export(tmp_path / "m.onnx", SANE, metadata))


def test_an_onnx_rule_that_cannot_decide_is_refused(tmp_path):
    import json

    from drgrade.errors import ModelFileError
    from drgrade.serving.runner import OnnxGrader

    for key, value in (("temperature", 0.0), ("thresholds", [0.2, None, 0.2, 0.2, 0.2])):
        rule = json.loads(drgrade_metadata()["decision_rule"]) | {key: value}
        path = fake_export(tmp_path / f"{key}.onnx", SANE, drgrade_metadata(decision_rule=json.dumps(rule)))
        with pytest.raises((ModelFileError, TypeError)):
            OnnxGrader(path)


def test_a_graph_with_control_flow_or_foreign_operators_is_refused(tmp_path):
    from onnx import helper

    from drgrade.errors import ModelFileError
    from drgrade.serving.runner import OnnxGrader

    loop = helper.make_node("Loop", ["trip", "cond"], ["out"])  # never run: refused from the file
    with pytest.raises(ModelFileError, match="Loop"):
        OnnxGrader(fake_export(tmp_path / "loop.onnx", SANE, drgrade_metadata(), extra_nodes=[loop]))
    three = fake_export(
        tmp_path / "three.onnx",
        SANE | {"probabilities": [0.2, 0.3, 0.5]},
        drgrade_metadata(),
        probabilities_width=3,
    )
    with pytest.raises(ModelFileError, match="probabilities are not"):
        OnnxGrader(three)


# -- hostile files --------------------------------------------------------------------------------
def deploy(model, folder, out, *extra):
    from drgrade.serving.runner import main as deploy_main

    deploy_main([str(model), str(folder), "--out", str(out), "--workers", "0", *extra])
    return list(csv_rows(out))


def csv_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        yield from csv.DictReader(f)


def test_a_file_name_that_is_not_utf8_is_graded_and_written_losslessly(one_photograph, tmp_path):
    name = os.fsdecode(b"caf\xe9 \xff.png")  # not valid UTF-8: Python keeps the bytes as surrogates
    shutil.copy(one_photograph / "eye.png", one_photograph / name)
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    rows = {os.path.basename(r["file"]): r for r in deploy(model, one_photograph, tmp_path / "p.csv")}
    assert rows[name]["grade"] == "2" and rows[name]["error"] == ""
    assert os.fsencode(name) in (tmp_path / "p.csv").read_bytes()  # the original bytes, not a replacement


def bomb_png(path, side=20000):
    """A small PNG whose header claims side x side pixels (its data would inflate to side^2 x 3 bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side * 3 + 1) * 64, 9)  # the first rows only: the file stays small
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_refused_from_its_header_without_the_memory(tmp_path):
    import subprocess
    import sys

    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 500_000
    code = (  # VmHWM: this process's own peak (ru_maxrss would include the forked pytest worker's)
        "from drgrade.data.intake import take_in, judge; "
        f"facts = take_in({str(bomb)!r}, 224)[1]; print(judge(facts)); "
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    reason, peak_kb = done.stdout.strip().splitlines()
    assert "too large (20000x20000" in reason
    assert int(peak_kb) < 600_000  # decoding it would take 1.2 GB: it was never decoded


def test_a_checkpoint_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
    import zipfile

    from drgrade.tasks import read_checkpoint

    path = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(24):
                member.write(b"\x00" * (16 << 20))  # 384 MiB of zeros: about 0.4 MiB on disk
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    assert path.stat().st_size < 2 << 20
    with pytest.raises(CheckpointError, match="zip bomb"):
        read_checkpoint(path)
    with pytest.raises(WeightsFileError, match="zip bomb"):
        create_clip("RN-tiny", str(path), 96)


def test_a_cell_that_a_spreadsheet_would_run_is_neutralised(one_photograph, tmp_path, monkeypatch):
    from pathlib import Path

    from drgrade.files import restore

    name = '=HYPERLINK("x.invalid";"click")+1.png'
    shutil.copy(one_photograph / "eye.png", one_photograph / name)
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    monkeypatch.chdir(one_photograph)  # the folder given as "." : file cells are bare names
    rows = deploy(model, Path("."), tmp_path / "p.csv")
    cells = [r["file"] for r in rows]
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in cells)
    assert "'" + name in cells and restore("'" + name) == name


def test_unreadable_files_and_folders_get_a_row_that_says_so(one_photograph, tmp_path, monkeypatch):
    from pathlib import Path

    (one_photograph / "locked").mkdir()
    shutil.copy(one_photograph / "eye.png", one_photograph / "locked" / "hidden.png")
    shutil.copy(one_photograph / "eye.png", one_photograph / "secret.png")
    real_scandir, real_read = os.scandir, Path.read_bytes

    def scandir(path="."):  # as for a folder without read permission (root reads everything, so simulated)
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def read_bytes(self):
        if self.name == "secret.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    rows = {os.path.basename(r["file"]): r for r in deploy(model, one_photograph, tmp_path / "p.csv")}
    assert "permission denied" in rows["secret.png"]["error"] and rows["secret.png"]["grade"] == ""
    assert "permission denied" in rows["locked"]["error"]
    assert rows["eye.png"]["grade"] == "2"


def test_webp_and_gif_photographs_are_graded_and_other_files_listed(one_photograph, tmp_path):
    from PIL import Image

    picture = Image.open(one_photograph / "eye.png")
    picture.save(one_photograph / "eye.webp", "WEBP", quality=95)
    picture.save(one_photograph / "eye.gif", "GIF")
    (one_photograph / "eye.png").unlink()
    (one_photograph / "notes.txt").write_text("not a photograph")
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    rows = {os.path.basename(r["file"]): r for r in deploy(model, one_photograph, tmp_path / "p.csv")}
    assert rows["eye.webp"]["grade"] == "2" and rows["eye.gif"]["grade"] == "2"
    assert "not an image type" in rows["notes.txt"]["error"]


@pytest.mark.parametrize("option", [["--batch_size", "0"], ["--batch_size", "-3"], ["--workers", "-1"]])
def test_bad_runner_options_are_refused_before_grading(option, one_photograph, tmp_path, capsys):
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    with pytest.raises(SystemExit) as exit_:
        deploy(model, one_photograph, tmp_path / "p.csv", *option)
    assert exit_.value.code == 2 and option[0] in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_a_zero_batch_size_is_refused_by_the_cli(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(cli_args("fit", "fcn_clip", synthetic, tmp_path / "runs", "--data.batch_size", "0"))
    assert exit_.value.code == 2 and "data.batch_size" in capsys.readouterr().err


def test_a_bad_out_is_refused_before_grading_and_a_full_disk_is_named(
    one_photograph, tmp_path, capsys, monkeypatch
):
    import time

    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    (tmp_path / "a_folder").mkdir()
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        deploy(model, one_photograph, tmp_path / "a_folder")
    assert exit_.value.code == 2 and "is a folder" in capsys.readouterr().err
    assert time.perf_counter() - start < 5
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with pytest.raises(SystemExit):
        deploy(model, one_photograph, tmp_path / "blocked" / "p.csv")
    assert "cannot create the folder" in capsys.readouterr().err

    import drgrade.files as files

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(SystemExit) as exit_:
        deploy(model, one_photograph, tmp_path / "p.csv")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "No space left on device" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists() and not list(tmp_path.glob(".p.csv*"))


def test_a_csv_row_longer_than_its_header_is_named(synthetic, tmp_path):
    from drgrade.data.sources.aptos import read as read_aptos
    from drgrade.errors import DataValidationError

    root = shutil.copytree(synthetic / "aptos2019", tmp_path / "aptos2019")
    lines = (root / "train.csv").read_text().splitlines()
    lines[3] += ",surplus"
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"train\.csv row 4: 3 cells for 2 columns"):
        read_aptos(root, verify_images=False)


def test_exif_orientation_is_applied_alike_by_every_reader(one_photograph, tmp_path):
    from PIL import Image

    from drgrade.data.images import read_rgb
    from drgrade.data.intake import take_in

    picture = Image.open(one_photograph / "eye.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer turns it 90 degrees clockwise
    picture.save(tmp_path / "sideways.jpg", "JPEG", quality=95, exif=exif)
    stored = np.asarray(Image.open(tmp_path / "sideways.jpg"))
    upright = read_rgb(tmp_path / "sideways.jpg")
    assert upright.shape == (stored.shape[1], stored.shape[0], 3)
    assert np.array_equal(upright, np.rot90(stored, -1))
    assert np.array_equal(
        take_in(tmp_path / "sideways.jpg", 96)[0], take_in(tmp_path / "sideways.jpg", 96)[0]
    )
    crop = take_in(tmp_path / "sideways.jpg", 96)[0]
    from drgrade.data.preprocess import preprocess_fundus

    assert np.abs(crop.astype(int) - preprocess_fundus(upright, 96).astype(int)).mean() < 1


# -- nothing lost ---------------------------------------------------------------------------------
def test_an_interrupted_export_leaves_the_good_model_in_place(zero_shot_checkpoint, tmp_path, monkeypatch):
    from drgrade.serving import export

    good = export.export_onnx(load_task(zero_shot_checkpoint), tmp_path / "m.onnx", 96)
    before = good.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export.onnx.checker, "check_model", killed)
    with pytest.raises(KeyboardInterrupt):
        export.export_onnx(load_task(zero_shot_checkpoint), tmp_path / "m.onnx", 96)
    assert good.read_bytes() == before and not list(tmp_path.glob(".m.onnx*"))


def test_an_interrupted_synth_is_completed_by_the_next_one_but_a_real_folder_is_kept(
    tmp_path, monkeypatch, capsys
):
    from drgrade.data import sources

    args = ["synth", "--out", str(tmp_path), "--num_aptos", "10", "--num_messidor", "8", "--image_size", "64"]
    real = sources.aptos.write_synthetic

    def killed(out, num, size, seed):
        (out / "aptos2019" / "train_images").mkdir(parents=True, exist_ok=True)
        (out / "aptos2019" / "train_images" / "half.png").write_bytes(b"half a file")
        raise KeyboardInterrupt

    object.__setattr__(sources.LAYOUTS["aptos"], "write_synthetic", killed)
    try:
        with pytest.raises(SystemExit) as stop:  # Ctrl+C: exit 130, said in one line, no traceback
            main(args)
        assert stop.value.code == 130
    finally:
        object.__setattr__(sources.LAYOUTS["aptos"], "write_synthetic", real)
    assert sources.synthetic_state(tmp_path / "aptos2019") == "incomplete"
    main(args)  # no --force needed: the folder is drgrade's own, unfinished
    assert len(list((tmp_path / "aptos2019" / "train_images").iterdir())) == 10
    assert sources.synthetic_state(tmp_path / "aptos2019") == "complete"
    mine = tmp_path / "mine"
    (mine / "aptos2019").mkdir(parents=True)
    (mine / "aptos2019" / "train.csv").write_text("id_code,diagnosis\nreal,2\n")
    with pytest.raises(SystemExit) as exit_:
        main(["synth", "--out", str(mine), "--num_aptos", "10", "--num_messidor", "8"])
    assert exit_.value.code == 2 and "--force" in capsys.readouterr().err
    assert (mine / "aptos2019" / "train.csv").read_text() == "id_code,diagnosis\nreal,2\n"


def test_results_keep_the_users_umask(one_photograph, tmp_path):
    previous = os.umask(0o022)
    try:
        model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
        deploy(model, one_photograph, tmp_path / "p.csv")
        assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        deploy(model, one_photograph, tmp_path / "q.csv")
        assert (tmp_path / "q.csv").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)
