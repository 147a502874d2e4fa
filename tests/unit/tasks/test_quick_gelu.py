"""QuickGELU follows the weights: inferred from what a weights file says, recorded in checkpoints."""

import json
import warnings

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from torch import nn

from drgrade.models.backbones.openclip import create_clip, register_tiny_configs, trained_with_quick_gelu
from drgrade.runs import QUICK_GELU_KEY
from drgrade.tasks import FCNCLIP


def activations(model: nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.modules() if isinstance(m, nn.GELU | QuickGELU)}


@pytest.mark.parametrize("how", ["script", "trace"])
def test_a_torchscript_archive_says_quick_gelu_in_its_code(how, tmp_path):
    block = nn.Sequential(nn.Linear(4, 4), QuickGELU())
    with warnings.catch_warnings():  # TorchScript is deprecated; OpenAI's archives are TorchScript
        warnings.simplefilter("ignore")
        archive = torch.jit.script(block) if how == "script" else torch.jit.trace(block, torch.randn(1, 4))
    archive.save(tmp_path / "w.pt")
    assert trained_with_quick_gelu(tmp_path / "w.pt", {}) is True


def test_the_signals_around_a_state_dict(tmp_path):
    path = tmp_path / "w.pt"
    assert trained_with_quick_gelu(path, {"context_length": torch.tensor(77)}) is True  # saved from OpenAI's
    assert trained_with_quick_gelu(path, {}) is None  # a bare open_clip state dict says nothing
    for quick in (False, True):  # an open_clip download from the Hugging Face hub
        (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": quick}}))
        assert trained_with_quick_gelu(path, {}) is quick


@pytest.fixture
def gelu_weights(tmp_path):
    """RN-tiny weights (its configuration says QuickGELU) from a download that says GELU."""
    register_tiny_configs()
    torch.manual_seed(0)
    path = tmp_path / "hub" / "open_clip_pytorch_model.bin"
    path.parent.mkdir()
    torch.save(open_clip.create_model("RN-tiny", pretrained=None).state_dict(), path)
    (path.parent / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"quick_gelu": False}}))
    return path


def test_a_weights_file_is_not_forced_to_quick_gelu(gelu_weights):
    assert activations(create_clip("RN-tiny", str(gelu_weights), 64)) == {"GELU"}


def test_a_checkpoint_rebuilt_without_its_weights_file_runs_the_activation_it_was_built_with(gelu_weights):
    trained = FCNCLIP("RN-tiny", str(gelu_weights), 64, decoder_widths=(16, 8, 8)).eval()
    checkpoint = {"state_dict": trained.state_dict()}
    trained.on_save_checkpoint(checkpoint)
    assert checkpoint[QUICK_GELU_KEY] is False
    rebuilt = FCNCLIP("RN-tiny", None, 64, decoder_widths=(16, 8, 8)).eval()  # as load_task builds it
    rebuilt.load_state_dict(checkpoint["state_dict"])
    rebuilt.on_load_checkpoint(checkpoint)
    tokens = trained.backbone.tokenize(["a fundus photograph with severe retinopathy"])
    with torch.no_grad():
        assert torch.equal(rebuilt.backbone.encode_text(tokens), trained.backbone.encode_text(tokens))
    assert activations(rebuilt.backbone.clip) == {"GELU"}
