"""What a checkpoint may ask drgrade to build: bounded options, and shapes checked before allocation.

A checkpoint records the options its model was built with, and ``load_task`` rebuilds the model
from them. From an untrusted file those options are input like any other: ``decoder_widths
(60000, 60000, 60000)`` would ask for 130 GB, ``image_size 60000`` 8 GB of positional table, and a
checkpoint naming ``ViT-bigG-14`` (or a FLAIR text tower of 200 layers) over a few small tensors
8 GB more, all before a single weight is compared. So, before anything is allocated:

1. each size option is bounded by what drgrade builds (``BOUNDS``) and the backbone must be one
   drgrade knows;
2. the backbone is built on PyTorch's ``meta`` device (shapes only, no memory) and its tensor
   shapes are compared with the checkpoint's: a checkpoint holds every weight, so an
   architecture larger than its tensors is refused by name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from drgrade.errors import CheckpointError
from drgrade.models.backbones import FLAIR, build_backbone

#: The input side and decoder widths a model drgrade builds may have (the ONNX runner's input
#: bounds are the same); a decoder has at most ``MAX_BLOCKS`` blocks.
IMAGE_SIZE = (32, 2048)
WIDTH = (1, 4096)
MAX_BLOCKS = 8


def known_backbones() -> set[str]:
    """Every backbone name drgrade can build: open_clip's architectures, its tiny ones and FLAIR."""
    import open_clip

    from drgrade.models.backbones.openclip import register_tiny_configs

    register_tiny_configs()
    return {*open_clip.list_models(), FLAIR}


def in_range(value: object, bounds: tuple[int, int]) -> bool:
    """Whether ``value`` is a whole number (not a bool) within ``bounds``."""
    return isinstance(value, int) and not isinstance(value, bool) and bounds[0] <= value <= bounds[1]


def option_problems(options: dict) -> list[str]:
    """Recorded options outside what drgrade builds (each names the option, its value and the bound)."""
    problems = []
    size = options.get("image_size")
    if size is not None and not in_range(size, IMAGE_SIZE):
        problems.append(f"image_size {size!r} (must be {IMAGE_SIZE[0]}..{IMAGE_SIZE[1]})")
    widths = options.get("decoder_widths")
    if widths is not None and not (
        isinstance(widths, list | tuple)
        and 1 <= len(widths) <= MAX_BLOCKS
        and all(in_range(w, WIDTH) for w in widths)
    ):
        problems.append(
            f"decoder_widths {str(widths)[:80]} (1..{MAX_BLOCKS} widths of {WIDTH[0]}..{WIDTH[1]})"
        )
    backbone = options.get("backbone")
    if "backbone" in options and (not isinstance(backbone, str) or backbone not in known_backbones()):
        problems.append(f"backbone {str(backbone)[:80]!r} (not an architecture drgrade builds)")
    return problems


def shape_problems(options: dict, state: dict) -> list[str]:
    """Backbone tensors the checkpoint lacks or holds in another shape (the backbone built on meta)."""
    with torch.device("meta"):
        backbone = build_backbone(
            options["backbone"], None, options.get("image_size"), options.get("text_encoder")
        )
    problems = []
    for name, tensor in backbone.state_dict().items():
        stored = state.get(f"backbone.{name}")
        if not isinstance(stored, torch.Tensor):
            problems.append(f"backbone.{name} missing")
        elif tuple(stored.shape) != tuple(tensor.shape):
            shapes = f"{tuple(stored.shape)}, the architecture's {tuple(tensor.shape)}"
            problems.append(f"backbone.{name} is {shapes}")
    return problems


def check_architecture(options: dict, state: dict, path: str | Path) -> None:
    """Refuse (``CheckpointError``) options that would build something other than the checkpoint holds.

    Args:
        options: the options the model would be built with.
        state: the checkpoint's state dict.
        path: the checkpoint, for the message.
    """
    problems = option_problems(options)
    if not problems and "backbone" in options:
        problems = shape_problems(options, state)
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{path} was refused before building its model: its recorded architecture does not match "
            f"what drgrade builds or what it holds ({'; '.join(problems[:3])}{more})"
        )
