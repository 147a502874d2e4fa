"""Fail safe: no file handed to drgrade runs code (checkpoints, weights files)."""

from __future__ import annotations

import shutil
import warnings
from types import SimpleNamespace

import open_clip
import pytest
import torch

from drgrade.cli import main
from drgrade.errors import WeightsFileError
from drgrade.models.clip_backbone import CLIPBackbone, create_clip
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
    CLIPBackbone("RN-tiny", None, 64)  # registers the tiny config
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
