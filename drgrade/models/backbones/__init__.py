"""The backbones every model runs on, by name: open_clip's CLIPs and FLAIR.

``backbone: RN50`` (the default), ``RN101``, ``RN50x4`` or any other open_clip ResNet;
``ViT-B-16``, ``ViT-B-32``, ``ViT-L-14`` or any other open_clip ViT pooled at its class token;
``flair`` (the retina CLIP the paper's own code used). ``RN-tiny`` and ``ViT-tiny`` are small
architectures for tests. See ``base.Backbone`` for what a backbone provides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drgrade.models.backbones.base import FEATURE_LAYERS, Backbone

#: The name that selects FLAIR (every other name is an open_clip architecture).
FLAIR = "flair"


@dataclass(frozen=True)
class Family:
    """A family of backbones: how to build one, how its inputs are normalised, what stops its weights.

    Adding a family is one entry in ``FAMILIES``; nothing else asks which family a name is.

    Args:
        build: ``(name, pretrained, image_size, text_encoder, freeze_image, freeze_text) -> Backbone``.
        normalisation: the (mean, std) per channel on a 0-1 scale its weights expect.
        weights_problems: ``(name, pretrained, text_encoder) -> problems``, found without loading.
    """

    build: Callable[..., Backbone]
    normalisation: Callable[[], tuple[tuple[float, ...], tuple[float, ...]]]
    weights_problems: Callable[[str, str | None, str | Mapping[str, str] | None], list[str]]


def _build_open_clip(name, pretrained, image_size, text_encoder, freeze_image, freeze_text) -> Backbone:
    from drgrade.models.backbones.openclip import open_clip_backbone

    return open_clip_backbone(
        name, pretrained=pretrained, image_size=image_size, freeze_image=freeze_image, freeze_text=freeze_text
    )


def _clip_normalisation() -> tuple[tuple[float, ...], tuple[float, ...]]:
    from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD

    return CLIP_MEAN, CLIP_STD


def _open_clip_problems(name: str, pretrained: str | None, text_encoder=None) -> list[str]:
    from drgrade.models.backbones.openclip import weights_problem

    problem = weights_problem(name, pretrained)
    return [problem] if problem else []


def _build_flair(name, pretrained, image_size, text_encoder, freeze_image, freeze_text) -> Backbone:
    from drgrade.models.backbones.flair import FlairBackbone

    return FlairBackbone(pretrained, text_encoder, freeze_image, freeze_text)


def _flair_normalisation() -> tuple[tuple[float, ...], tuple[float, ...]]:
    from drgrade.models.backbones.flair import NORMALISATION

    return NORMALISATION


def _flair_problems(name: str, pretrained: str | None, text_encoder=None) -> list[str]:
    problems = []
    if pretrained is not None and not Path(pretrained).expanduser().is_file():
        problems.append(
            f"--model.init_args.pretrained {pretrained}: no such file (FLAIR's flair_resnet.pth, from "
            "github.com/jusiro/FLAIR; or null for random weights)"
        )
    stored = isinstance(text_encoder, Mapping)
    if not stored and (
        text_encoder is None or not (Path(text_encoder).expanduser() / "config.json").is_file()
    ):
        problems.append(
            f"--model.init_args.text_encoder {text_encoder}: FLAIR needs the Hugging Face folder of its "
            "text model (emilyalsentzer/Bio_ClinicalBERT: config and tokenizer files)"
        )
    try:
        import transformers  # noqa: F401
    except ImportError:
        problems.append("the flair backbone needs transformers: pip install 'drgrade[flair]'")
    return problems


#: open_clip's CLIPs: every name not in ``FAMILIES`` (an open_clip architecture).
OPEN_CLIP = Family(_build_open_clip, _clip_normalisation, _open_clip_problems)
#: The families by backbone name.
FAMILIES: dict[str, Family] = {FLAIR: Family(_build_flair, _flair_normalisation, _flair_problems)}


def family_of(name: str | None) -> Family:
    """The family of backbone ``name`` (open_clip's unless registered otherwise)."""
    return FAMILIES.get(name or "", OPEN_CLIP)


def build_backbone(
    name: str,
    pretrained: str | None,
    image_size: int | None,
    text_encoder: str | Path | Mapping[str, str] | None = None,
    freeze_image: bool = True,
    freeze_text: bool = True,
) -> Backbone:
    """The backbone ``name`` with its weights (a tag, a file, or None for random).

    Args:
        name: ``RN50``, ``ViT-B-16``, ``flair``, ...
        pretrained: where the weights come from (see the family's module).
        image_size: the input size (positional tables are resized to it).
        text_encoder: FLAIR's text-model folder, or its stored files (FLAIR only).
        freeze_image: no gradients (and fixed BatchNorm statistics) for the image tower.
        freeze_text: the same for the text tower.
    """
    return family_of(name).build(name, pretrained, image_size, text_encoder, freeze_image, freeze_text)


def normalisation_of(name: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation a backbone expects, from its name alone (nothing built)."""
    return family_of(name).normalisation()


def weights_problems(
    name: str, pretrained: str | None, text_encoder: str | Mapping[str, str] | None = None
) -> list[str]:
    """What would stop the backbone's weights from loading, found in seconds without loading them.

    Args:
        name: the backbone.
        pretrained: its weights (tag, file or None).
        text_encoder: FLAIR's text-model folder, or the files a checkpoint stored (nothing to check).
    """
    return family_of(name).weights_problems(name, pretrained, text_encoder)


__all__ = [
    "FAMILIES",
    "FEATURE_LAYERS",
    "FLAIR",
    "Backbone",
    "Family",
    "build_backbone",
    "family_of",
    "normalisation_of",
    "weights_problems",
]
