"""A checkpoint's recorded architecture is bounded and shape-checked before anything is allocated."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from drgrade.runs import TASK_KEY, TEXT_ENCODER_KEY
from tests.integration.hostile.test_memory import run_measured

#: The BERT configuration of a FLAIR text tower 200 layers deep and 16384 wide (7.2 GB to build).
HUGE_BERT = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "vocab_size": 30522,
    "hidden_size": 16384,
    "num_hidden_layers": 200,
    "num_attention_heads": 16,
    "intermediate_size": 16384,
    "max_position_embeddings": 512,
}


def crafted(zero_shot_checkpoint, path, task: str | None = None, **options):
    checkpoint = torch.load(zero_shot_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"].update(options)
    if task:
        checkpoint[TASK_KEY] = checkpoint[TASK_KEY].rsplit(":", 1)[0] + ":" + task
    if options.get("backbone") == "flair":
        checkpoint[TEXT_ENCODER_KEY] = {"config.json": json.dumps(HUGE_BERT), "vocab.txt": "[PAD]\n[UNK]\n"}
    torch.save(checkpoint, path)
    return path


def test_a_checkpoint_asking_for_gigabytes_is_refused_by_name_without_them(zero_shot_checkpoint, tmp_path):
    cases = {
        "widths": crafted(zero_shot_checkpoint, tmp_path / "w.ckpt", "FCNCLIP", decoder_widths=[60000] * 3),
        "size": crafted(zero_shot_checkpoint, tmp_path / "s.ckpt", image_size=60000),
        "bigG": crafted(zero_shot_checkpoint, tmp_path / "g.ckpt", backbone="ViT-bigG-14"),
        "flair": crafted(zero_shot_checkpoint, tmp_path / "f.ckpt", backbone="flair"),
        "unknown": crafted(zero_shot_checkpoint, tmp_path / "u.ckpt", backbone="RN9000"),
    }
    said, peak = run_measured(
        textwrap.dedent(f"""
        import json
        from drgrade.errors import CheckpointError
        from drgrade.tasks import load_task
        said = {{}}
        for name, path in {json.dumps({k: str(v) for k, v in cases.items()})}.items():
            try:
                load_task(path)
                said[name] = "loaded"
            except CheckpointError as error:
                said[name] = str(error)
        print(json.dumps(said))
        """)
    )
    assert peak < 3.0, f"peak resident memory {peak:.2f} GB"
    assert "decoder_widths [60000, 60000, 60000]" in said["widths"]
    assert "image_size 60000 (must be 32..2048)" in said["size"]
    assert "backbone.clip" in said["bigG"] and "the architecture's" in said["bigG"]
    assert "backbone.flair" in said["flair"] and "missing" in said["flair"]
    assert "backbone 'RN9000'" in said["unknown"]
    for name, message in said.items():
        assert str(cases[name]) in message and "refused before building its model" in message


@pytest.mark.parametrize("backbone", ["RN-tiny"])
def test_a_sound_checkpoint_still_loads(zero_shot_checkpoint, backbone):
    from drgrade.tasks import load_task

    assert load_task(zero_shot_checkpoint).hparams.backbone == backbone
