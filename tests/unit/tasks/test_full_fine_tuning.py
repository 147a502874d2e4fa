"""Full fine-tuning (configs/fcn_clip_finetune.yaml): FCN-CLIP's image tower learns at its own rate."""

from __future__ import annotations

import torch
import yaml

from drgrade.tasks import FCNCLIP
from tests.conftest import ROOT


def test_the_finetune_config_trains_the_image_tower_in_a_group_at_the_smaller_rate():
    options = yaml.safe_load((ROOT / "configs" / "fcn_clip_finetune.yaml").read_text())["model"]
    assert options["class_path"] == "drgrade.tasks.FCNCLIP"
    init = options["init_args"] | {"backbone": "RN-tiny", "pretrained": None, "decoder_widths": [32, 16]}
    torch.manual_seed(0)
    task = FCNCLIP(image_size=64, **init)
    tower = list(task.backbone.image_parameters())
    optimiser = task.configure_optimizers()
    head, image = optimiser.param_groups
    assert image["lr"] == init["image_lr"] < head["lr"] == init["lr"]
    trained_tower = {id(p) for p in image["params"]}
    assert trained_tower and trained_tower <= {id(p) for p in tower}
    assert not trained_tower & {id(p) for p in head["params"]}
    # one step moves the tower (the frozen configs/fcn_clip.yaml leaves it where it was)
    before = [p.detach().clone() for p in image["params"]]
    images, grades = torch.randn(8, 3, 64, 64), torch.arange(8) % 5
    task.criterion(task(images), grades).backward()
    optimiser.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, image["params"], strict=True))
    frozen = yaml.safe_load((ROOT / "configs" / "fcn_clip.yaml").read_text())["model"]["init_args"]
    assert not frozen.get("finetune_image", False)
