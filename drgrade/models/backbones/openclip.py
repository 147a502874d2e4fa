"""open_clip CLIP models: ResNets (RN50, the default, and RN101, RN50x4, RN-tiny for tests) and ViTs.

One wrapper per image-tower family over one open_clip model (``self.clip``); the text tower, the
tokenizer and the logit scale are shared. Weights come from an open_clip download tag
(``openai``), a local file read as tensors only (``drgrade.models.weights``), or nowhere
(random). For a ViT, FCN-CLIP reads the patch tokens as a feature map (``layer4``: the last
block's, ``layer3``: the block at three quarters of the depth) and Grad-CAM weighs the input of
the last block.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import QuickGELU
from torch import nn

from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD
from drgrade.errors import OptionError, WeightsFileError
from drgrade.models.backbones.base import FEATURE_LAYERS, Backbone
from drgrade.models.downloads import offline, open_clip_cached, unavailable
from drgrade.models.weights import is_torchscript, read_state_dict

MODEL_CONFIGS = Path(__file__).parent.parent / "model_configs"
#: A ModifiedResNet's stages.
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
#: Entries of OpenAI's TorchScript archives that are not weights (open_clip drops them too).
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")
#: QuickGELU in a TorchScript archive's code: its class, or its constant where scripted inline
#: (``x * sigmoid(1.702 * x)``; a traced archive keeps the constant apart, the class by name).
QUICK_GELU_CODE = (b"class QuickGELU(", b"1.702")
_WEIGHTS_HELP = (
    "Without network access, download the weights elsewhere (e.g. open_clip's RN50 'openai' "
    "checkpoint), copy the file here and pass --model.init_args.pretrained /path/to/RN50.pt; "
    "or pass --model.init_args.pretrained null to train from random weights (results will "
    "not match the paper)."
)


def register_tiny_configs() -> None:
    """Make drgrade's small test architectures (RN-tiny, ViT-tiny) known to open_clip."""
    for config in MODEL_CONFIGS.glob("*.json"):
        if config.stem not in open_clip.list_models():
            open_clip.add_model_config(config)


def _resized_grid(table: torch.Tensor, new_grid: int) -> torch.Tensor:
    """A (1 + grid*grid, C) positional table interpolated (bicubic) to ``new_grid`` squared."""
    old_grid = int((table.shape[0] - 1) ** 0.5)
    if old_grid == new_grid:
        return table
    grid = table[1:].reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat([table[:1], grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1)])


def resize_positions(visual: nn.Module, image_size: int) -> None:
    """Fit the image tower's positional table to ``image_size`` (weights come at their own size).

    A ModifiedResNet's attention pool has a (grid*grid + 1) table for a stride of 32; a ViT's
    token table has one per patch. The grid is interpolated bicubically, as open_clip does.
    """
    if isinstance(visual, ModifiedResNet):
        owner, stride = visual.attnpool, 32
    else:
        owner, stride = visual, visual.patch_size[0]
        visual.grid_size = (image_size // stride, image_size // stride)
    old = owner.positional_embedding
    new = _resized_grid(old.data, image_size // stride)
    owner.positional_embedding = nn.Parameter(new, requires_grad=old.requires_grad)


def trained_with_quick_gelu(path: Path, state: dict[str, torch.Tensor]) -> bool | None:
    """Whether a weights file's CLIP was trained with QuickGELU, from what the file says (None: nothing).

    A state dict holds no activation, and the wrong one silently degrades every embedding, so the
    signals are those around the tensors: OpenAI's TorchScript archive carries its code, which
    defines QuickGELU (``x * sigmoid(1.702 * x)``) where the model uses it; a state dict saved
    from OpenAI's model keeps its ``input_resolution`` / ``context_length`` / ``vocab_size``
    entries (every OpenAI CLIP was trained with QuickGELU); an open_clip download from the
    Hugging Face hub has ``open_clip_config.json`` beside it, whose ``model_cfg.quick_gelu``
    says. A bare open_clip state dict says nothing: the architecture's own setting holds (``RN50-quickgelu``,
    ``ViT-B-32-quickgelu``, ... name the QuickGELU variants).

    Args:
        path: the weights file.
        state: its tensors (``read_state_dict``).
    """
    if is_torchscript(path):
        with zipfile.ZipFile(path) as archive:
            code = [archive.read(n) for n in archive.namelist() if "/code/" in n and n.endswith(".py")]
        if any(mark in text for text in code for mark in QUICK_GELU_CODE):
            return True
    if any(key in state for key in _ARCHIVE_EXTRAS):
        return True
    config = path.with_name("open_clip_config.json")
    try:
        quick = json.loads(config.read_text())["model_cfg"].get("quick_gelu", False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return quick if isinstance(quick, bool) else None


def tag_quick_gelu(model_name: str, tag: str) -> bool:
    """Whether open_clip's download ``tag`` was trained with QuickGELU.

    Its pretrained config says; where open_clip's does not (2.26), the ``openai`` tags were.
    """
    return bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", tag == "openai"))


def set_quick_gelu(model: nn.Module, quick: bool) -> None:
    """Make every GELU of ``model`` a QuickGELU (``quick``) or every QuickGELU a GELU.

    Activations hold no weights, so this is exact before or after the weights load.
    """
    old, new = (nn.GELU, QuickGELU) if quick else (QuickGELU, nn.GELU)
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is old:
                setattr(module, name, new())


def load_weights_file(model: nn.Module, state: dict[str, torch.Tensor], path: Path, model_name: str) -> None:
    """Load a local CLIP weights file's tensors into ``model`` (read with ``read_state_dict``).

    Args:
        model: the freshly built open_clip model.
        state: the file's tensors.
        path: the weights file, for messages.
        model_name: the architecture, for messages.
    """
    persistent = model.state_dict()
    for key in [*_ARCHIVE_EXTRAS, *(n for n, _ in model.named_buffers() if n not in persistent)]:
        state.pop(key, None)  # a TorchScript archive also stores non-persistent buffers (attn_mask)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsFileError(
            f"{path} does not hold {model_name} CLIP weights ({str(error).splitlines()[0][:200]})"
        ) from None


def weights_problem(model_name: str, pretrained: str | None) -> str | None:
    """What stops ``pretrained`` from loading, found without loading it (None: nothing known).

    A missing file, an unknown tag, or a tag neither cached nor downloadable (offline) is
    reported in seconds; the file's content is checked when it loads.

    Args:
        model_name: the architecture.
        pretrained: a tag, a file or None.
    """
    if pretrained is None or Path(pretrained).expanduser().is_file():
        return None
    register_tiny_configs()
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    option = "--model.init_args.pretrained"
    if pretrained not in tags:
        return (
            f"{option} {pretrained}: no such file, and not an open_clip tag for {model_name} "
            f"(tags: {', '.join(tags) or 'none'}); pass a weights file, or null for random weights"
        )
    if open_clip_cached(model_name, pretrained) is None and offline():
        return unavailable(f"{model_name} CLIP weights {pretrained!r}", option, f"{model_name}.pt")
    return None


def current_device() -> torch.device:
    """The device new tensors are made on now, a ``with torch.device("meta")`` block included.

    (``torch.get_default_device()`` sees such a block only in newer torch; 2.5 and 2.6 say cpu.)
    """
    return torch.empty(()).device


def create_clip(model_name: str, pretrained: str | None, image_size: int | None) -> nn.Module:
    """Build an open_clip CLIP; ``pretrained`` is a tag (``openai``), a file, or None (random).

    A file is read as tensors only (``torch.load(weights_only=True)``, or ``torch.jit.load`` for
    OpenAI's TorchScript archives): a weights file never runs code.
    """
    register_tiny_configs()
    if pretrained is None:
        return open_clip.create_model(
            model_name, pretrained=None, force_image_size=image_size, device=current_device()
        )
    path = Path(pretrained).expanduser()
    if path.is_file():
        model = open_clip.create_model(model_name, pretrained=None)
        try:
            state = read_state_dict(path)
            load_weights_file(model, state, path, model_name)
        except WeightsFileError as error:
            raise WeightsFileError(f"{error}\n{_WEIGHTS_HELP}") from None
        quick = trained_with_quick_gelu(path, state)
        if quick is not None:  # the activation the file was trained with, whatever the name's default
            set_quick_gelu(model, quick)
    else:
        problem = weights_problem(model_name, pretrained)
        if problem:
            raise WeightsFileError(problem)
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=pretrained,
                force_quick_gelu=tag_quick_gelu(model_name, pretrained),
                weights_only=True,
            )
        except Exception as error:  # download and cache failures come in many types
            raise WeightsFileError(
                f"could not load {model_name} CLIP weights from open_clip's {pretrained!r} download: "
                f"{type(error).__name__}: {error}\n{_WEIGHTS_HELP}"
            ) from error
    if image_size is not None:
        resize_positions(model.visual, image_size)
    return model


class OpenClipBackbone(Backbone):
    """The parts every open_clip CLIP shares: text tower, tokenizer, logit scale, weights.

    Args:
        model_name: the open_clip architecture (``RN50``, ``ViT-B-16``, ...).
        pretrained: open_clip tag such as ``openai``, a local weights file, or None (random).
        image_size: input size; the positional tables are resized to it.
        freeze_image: see ``Backbone``.
        freeze_text: see ``Backbone``.
    """

    family = "open_clip"

    def __init__(
        self,
        model_name: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int | None = None,
        freeze_image: bool = True,
        freeze_text: bool = True,
    ):
        super().__init__(freeze_image, freeze_text)
        self.model_name = model_name
        self.clip = create_clip(model_name, pretrained, image_size)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.image_tower = self.clip.visual
        # CLIP's learned temperature stays as trained: the ranking model uses its own (0.2)
        self.clip.logit_scale.requires_grad_(False)
        self.finish_freezing()

    @property
    def quick_gelu(self) -> bool:
        """Whether the towers use QuickGELU (checkpoints record it: their state dict cannot say)."""
        return any(isinstance(module, QuickGELU) for module in self.clip.modules())

    @quick_gelu.setter
    def quick_gelu(self, quick: bool) -> None:
        set_quick_gelu(self.clip, quick)

    @property
    def visual(self) -> nn.Module:
        """The open_clip image tower."""
        return self.clip.visual

    def text_modules(self) -> list[nn.Module]:
        """Everything of the CLIP model except the image tower (token and positional tables included)."""
        return [module for name, module in self.clip.named_children() if name != "visual"]

    def text_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the text tower (``logit_scale`` belongs to neither tower)."""
        visual = {id(p) for p in self.clip.visual.parameters()}
        return [p for n, p in self.clip.named_parameters() if id(p) not in visual and n != "logit_scale"]

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """CLIP's input normalisation (mean, std per channel, 0-1 scale)."""
        return CLIP_MEAN, CLIP_STD

    @property
    def embed_dim(self) -> int:
        """Width of the joint image-text embedding."""
        return self.clip.text_projection.shape[1]

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned logit scale (exp of the stored log value)."""
        return self.clip.logit_scale.exp()

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The pooled image embedding (attention pool for a ResNet, class token for a ViT)."""
        features = self.clip.encode_image(images)
        return F.normalize(features, dim=-1) if normalize else features

    # -- text side ------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids of ``texts`` (77 BPE tokens each) on the model's device."""
        return self.tokenizer(texts).to(self.clip.token_embedding.weight.device)

    def end_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The end-of-text token: the highest id of CLIP's vocabulary."""
        return tokens.argmax(dim=-1)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The token embedding of ``tokens``."""
        return self.clip.token_embedding(tokens)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings of token ids (open_clip's own path)."""
        return self.clip.encode_text(tokens, normalize=normalize)

    def encode_prompt_embeddings(
        self, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Text embeddings from prompt *embeddings* (learnable context), pooled at the end token.

        With ``embeddings = token_embeddings(tokens)`` this equals ``encode_text(tokens)``.
        """
        clip = self.clip
        cast = clip.transformer.get_cast_dtype()
        x = embeddings.to(cast) + clip.positional_embedding.to(cast)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), self.end_positions(tokens)]
        x = x @ clip.text_projection
        return F.normalize(x, dim=-1) if normalize else x

    def zero_shot_classifier(self, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
        """[D, K]; every class's prompts in one batch, averaged as open_clip's own classifier does."""
        counts = {len(p) for p in prompts}
        if len(counts) != 1:
            return super().zero_shot_classifier(prompts)
        with torch.no_grad():
            tokens = self.tokenize([text for texts in prompts for text in texts])
            embeddings = self.encode_text(tokens, normalize=True)
            means = embeddings.reshape(len(prompts), counts.pop(), -1).mean(dim=1)
            return (means / means.norm(dim=1, keepdim=True)).T


class OpenClipResNet(OpenClipBackbone):
    """An open_clip ModifiedResNet CLIP (RN50, RN101, RN50x4, RN-tiny)."""

    cam_layer = "layer4"

    def feature_channels(self, layer: str) -> int:
        """Output channels of ``layer`` (a ModifiedResNet stage ends in a bottleneck's bn3)."""
        return getattr(self.visual, layer)[-1].bn3.num_features

    def freeze_after(self, layer: str) -> None:
        """No gradients for the stages after ``layer`` and the attention pool."""
        for name in [*RESNET_STAGES[RESNET_STAGES.index(layer) + 1 :], "attnpool"]:
            getattr(self.visual, name).requires_grad_(False)

    def feature_maps(
        self, images: torch.Tensor, layers: Sequence[str] = ("layer4",)
    ) -> dict[str, torch.Tensor]:
        """The requested stage outputs, stopping after the deepest asked."""
        unknown = set(layers) - set(RESNET_STAGES)
        if unknown:
            raise ValueError(f"unknown feature layer(s) {sorted(unknown)}; choose from {FEATURE_LAYERS}")
        x = self.visual.stem(images.to(self.visual.conv1.weight.dtype))
        out: dict[str, torch.Tensor] = {}
        last = max(RESNET_STAGES.index(layer) for layer in layers)
        for name in RESNET_STAGES[: last + 1]:
            x = getattr(self.visual, name)(x)
            if name in layers:
                out[name] = x
        return out

    def cam_activations(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's map: the attention pool computes the embedding from it."""
        return self.feature_maps(images, ("layer4",))["layer4"]

    def cam_embedding(self, activations: torch.Tensor) -> torch.Tensor:
        """The attention pool of the last stage's map."""
        return self.visual.attnpool(activations)


class OpenClipViT(OpenClipBackbone):
    """An open_clip VisionTransformer CLIP (ViT-B-16, ViT-B-32, ViT-L-14, ViT-tiny)."""

    cam_layer = "last block"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        visual = self.visual
        if visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
            raise OptionError(
                f"{self.model_name}: only ViTs pooled at the class token are supported "
                "(open_clip's CLIP ViTs are; CoCa and SigLIP-style pooling are not)"
            )

    @property
    def blocks(self) -> nn.ModuleList:
        """The image transformer's blocks."""
        return self.visual.transformer.resblocks

    def _depth(self, layer: str) -> int:
        """Blocks run for a feature layer: all of them for layer4, three quarters for layer3."""
        if layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown feature layer {layer!r}; choose from {FEATURE_LAYERS}")
        return len(self.blocks) if layer == "layer4" else max(1, round(0.75 * len(self.blocks)))

    def _tokens(self, images: torch.Tensor, blocks: int) -> torch.Tensor:
        """[B, 1 + N, W]: class and patch tokens after the first ``blocks`` blocks."""
        visual = self.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))
        return self._run(x, self.blocks[:blocks])

    def _run(self, x: torch.Tensor, blocks: Sequence[nn.Module]) -> torch.Tensor:
        batch_first = getattr(self.visual.transformer, "batch_first", True)
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks:
            x = block(x)
        return x if batch_first else x.transpose(0, 1)

    def feature_channels(self, layer: str) -> int:
        """The token width."""
        return self.visual.conv1.out_channels

    def freeze_after(self, layer: str) -> None:
        """No gradients for the blocks after ``layer``'s and the pooling head."""
        for block in self.blocks[self._depth(layer) :]:
            block.requires_grad_(False)
        self.visual.ln_post.requires_grad_(False)
        if self.visual.proj is not None:
            self.visual.proj.requires_grad_(False)

    def cam_maps(self, activations: torch.Tensor) -> torch.Tensor:
        """Patch tokens [B, 1 + N, W] as a map [B, W, h, w] (the class token left out)."""
        grid = self.visual.grid_size
        return activations[:, 1:].transpose(1, 2).reshape(activations.shape[0], -1, *grid)

    def feature_maps(
        self, images: torch.Tensor, layers: Sequence[str] = ("layer4",)
    ) -> dict[str, torch.Tensor]:
        """Patch tokens as maps, after the block of each requested layer."""
        depths = {layer: self._depth(layer) for layer in layers}
        x, done, out = None, 0, {}
        for layer, depth in sorted(depths.items(), key=lambda item: item[1]):
            x = self._tokens(images, depth) if x is None else self._run(x, self.blocks[done:depth])
            done = depth
            out[layer] = self.cam_maps(x)
        return out

    def cam_activations(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's input tokens: the class token's embedding attends to them there."""
        return self._tokens(images, len(self.blocks) - 1)

    def cam_embedding(self, activations: torch.Tensor) -> torch.Tensor:
        """The last block, then the class token's normalisation and projection."""
        x = self.visual.ln_post(self._run(activations, self.blocks[-1:]))[:, 0]
        return x @ self.visual.proj if self.visual.proj is not None else x


def open_clip_backbone(model_name: str, **options) -> OpenClipBackbone:
    """The wrapper of the right family for an open_clip architecture name."""
    register_tiny_configs()
    if model_name not in open_clip.list_models():
        raise OptionError(
            f"backbone {model_name!r} is not an open_clip model; e.g. RN50, RN101, ViT-B-16, ViT-L-14 "
            "(open_clip.list_models() lists them all), or flair"
        )
    vision = open_clip.get_model_config(model_name)["vision_cfg"]
    family = OpenClipResNet if isinstance(vision.get("layers"), list) else OpenClipViT
    if vision.get("timm_model_name") or vision.get("hf_model_name"):
        raise OptionError(f"{model_name}: timm and Hugging Face image towers are not supported")
    return family(model_name, **options)


__all__ = ["OpenClipBackbone", "OpenClipResNet", "OpenClipViT", "open_clip_backbone"]
