"""The plain-CNN baseline: a timm network with a 5-grade classifier, its weights read as data."""

from __future__ import annotations

import pytest
import torch

from drgrade.errors import CheckpointError, OptionError, WeightsFileError
from drgrade.models import cnn
from drgrade.tasks import CNNBaseline, load_task


def coloured_squares(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of 5 grades: grade k has a bright patch in one of 5 places, on noise."""
    grades = torch.arange(n) % 5
    images = torch.randn(n, 3, 32, 32, generator=generator) * 0.5
    for i, k in enumerate(grades.tolist()):
        row, col = divmod(k, 3)
        images[i, :, row * 16 : row * 16 + 12, col * 10 : col * 10 + 10] += 2.0
    return images, grades


def test_cnn_baseline_learns_a_synthetic_task_with_its_body_at_the_smaller_rate():
    torch.manual_seed(0)
    task = CNNBaseline(
        "test_efficientnet", pretrained=None, image_size=32, drop_rate=0.0, lr=3e-3, image_lr=3e-3
    )
    optimiser = task.configure_optimizers()
    classifier = set(task.network.get_classifier().parameters())
    head, body = optimiser.param_groups
    assert set(head["params"]) == classifier and head["lr"] == 3e-3
    assert len(body["params"]) == len(list(task.parameters())) - len(classifier) and body["lr"] == 3e-3
    generator = torch.Generator().manual_seed(0)
    images, grades = coloured_squares(60, generator)
    task.train()
    for _ in range(25):
        optimiser.zero_grad()
        task.criterion(task(images), grades).backward()
        optimiser.step()
    test, truth = coloured_squares(40, generator)
    task.eval()
    with torch.no_grad():
        logits, embedding = task.embed(test)
        assert torch.allclose(logits, task(test), atol=1e-4) and embedding.shape == (
            40,
            task.network.num_features,
        )
    assert (logits.argmax(1) == truth).float().mean() > 0.6  # chance is 0.2
    maps, _, method = task.attention_maps(test[:2])
    assert maps.shape == (2, 32, 32) and method.startswith("Grad-CAM")
    assert task.normalisation() == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_a_frozen_body_trains_only_the_classifier():
    task = CNNBaseline("test_convnext", pretrained=None, image_size=32, finetune_image=False)
    trainable = [p for p in task.parameters() if p.requires_grad]
    assert set(trainable) == set(task.network.get_classifier().parameters())
    assert len(task.configure_optimizers().param_groups) == 1


def test_imagenet_weights_offline_name_the_fix_and_a_weights_file_loads_the_body(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(cnn, "cached_weights", lambda name, tag: None)
    with pytest.raises(
        WeightsFileError, match=r"not in the local cache and HF_HUB_OFFLINE is set.*pretrained"
    ):
        CNNBaseline("test_efficientnet", pretrained="imagenet", image_size=32)
    with pytest.raises(OptionError, match=r"'efficientnet_b9' is not a timm architecture; did you mean"):
        CNNBaseline("efficientnet_b9", pretrained=None)
    import timm

    imagenet = timm.create_model("test_efficientnet", pretrained=False)  # a 1000-class head, as ImageNet's
    torch.save(imagenet.state_dict(), tmp_path / "weights.pt")
    task = CNNBaseline("test_efficientnet", pretrained=str(tmp_path / "weights.pt"), image_size=32)
    assert torch.equal(task.network.conv_stem.weight, imagenet.conv_stem.weight)
    assert task.network.get_classifier().out_features == 5
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "other.pt")
    with pytest.raises(WeightsFileError, match=r"other.pt: not weights of this architecture"):
        CNNBaseline("test_efficientnet", pretrained=str(tmp_path / "other.pt"), image_size=32)


def test_a_checkpoint_naming_another_network_than_its_weights_is_refused_before_building(tmp_path):
    from drgrade.runs import TASK_KEY

    task = CNNBaseline("test_efficientnet", pretrained=None, image_size=32)
    options = dict(task.hparams)
    checkpoint = {"state_dict": task.state_dict(), TASK_KEY: "CNNBaseline", "hyper_parameters": options}
    torch.save(checkpoint, tmp_path / "good.ckpt")
    assert isinstance(load_task(tmp_path / "good.ckpt"), CNNBaseline)
    checkpoint["hyper_parameters"] = options | {"cnn": "test_resnet"}
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(
        CheckpointError, match=r"bad.ckpt was refused before building.*'test_resnet' does not match"
    ):
        load_task(tmp_path / "bad.ckpt")
