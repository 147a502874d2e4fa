"""One wrapper over an open_clip ResNet CLIP, shared by every model.

It exposes what the three models need and nothing else: the image tower's feature maps
(layer1..layer4), the pooled image embedding, text embeddings from token ids or from prompt
*embeddings* (learnable prompts, CoOp-style), per-tower freezing that keeps BatchNorm in eval
mode, and the matching tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD
from drgrade.errors import OptionError, WeightsFileError
from drgrade.models.downloads import offline, open_clip_cached, unavailable
from drgrade.models.weights import read_state_dict

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
FEATURE_LAYERS = ("layer1", "layer2", "layer3", "layer4")
SUPPORTED = ("RN50", "RN101", "RN50x4", "RN-tiny")


def _register_tiny_configs() -> None:
    for config in MODEL_CONFIGS.glob("*.json"):
        if config.stem not in open_clip.list_models():
            open_clip.add_model_config(config)


def _resize_attnpool(visual: nn.Module, image_size: int) -> None:
    """Interpolate the attention-pool positional embedding to the grid of ``image_size``.

    ModifiedResNet's attnpool has a fixed (grid*grid + 1) positional embedding; pretrained
    weights come at 224 px, so another input size needs the grid resized (bicubic, as CLIP's
    ViT position embeddings are resized by open_clip).
    """
    pool = visual.attnpool
    old = pool.positional_embedding.data
    old_grid = int((old.shape[0] - 1) ** 0.5)
    new_grid = image_size // 32
    if new_grid == old_grid:
        return
    grid = old[1:].reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    new = torch.cat([old[:1], grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1)])
    pool.positional_embedding = nn.Parameter(new, requires_grad=pool.positional_embedding.requires_grad)
    visual.image_size = (image_size, image_size)


#: Entries of OpenAI's TorchScript archives that are not weights (open_clip drops them too).
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")
_WEIGHTS_HELP = (
    "Without network access, download the weights elsewhere (e.g. open_clip's RN50 'openai' "
    "checkpoint), copy the file here and pass --model.init_args.pretrained /path/to/RN50.pt; "
    "or pass --model.init_args.pretrained null to train from random weights (results will "
    "not match the paper)."
)


def load_weights_file(model: nn.Module, path: Path, model_name: str) -> None:
    """Load a local CLIP weights file into ``model``, reading tensors only (see ``models.weights``).

    Args:
        model: the freshly built open_clip model.
        path: the weights file.
        model_name: the architecture, for messages.
    """
    state = read_state_dict(path)
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
    if pretrained is None:
        return None
    _register_tiny_configs()
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if Path(pretrained).expanduser().is_file():
        return None
    option = "--model.init_args.pretrained"
    if pretrained not in tags:
        return (
            f"{option} {pretrained}: no such file, and not an open_clip tag for {model_name} "
            f"(tags: {', '.join(tags) or 'none'}); pass a weights file, or null for random weights"
        )
    if open_clip_cached(model_name, pretrained) is None and offline():
        return unavailable(f"{model_name} CLIP weights {pretrained!r}", option, f"{model_name}.pt")
    return None


def create_clip(model_name: str, pretrained: str | None, image_size: int | None) -> nn.Module:
    """Build an open_clip ResNet CLIP; ``pretrained`` is a tag (``openai``), a file, or None.

    A file is read as tensors only (``torch.load(weights_only=True)``, or ``torch.jit.load`` for
    OpenAI's TorchScript archives): a weights file never runs code.
    """
    _register_tiny_configs()
    if model_name not in SUPPORTED:
        raise OptionError(
            f"backbone {model_name!r} is not a supported ResNet CLIP; choose one of {SUPPORTED}"
        )
    if pretrained is None:
        return open_clip.create_model(model_name, pretrained=None, force_image_size=image_size)
    path = Path(pretrained).expanduser()
    if path.is_file():
        # OpenAI's ResNet weights were trained with QuickGELU; other activations silently degrade them.
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=True)
        try:
            load_weights_file(model, path, model_name)
        except WeightsFileError as error:
            raise WeightsFileError(f"{error}\n{_WEIGHTS_HELP}") from None
    elif pretrained in open_clip.list_pretrained_tags_by_model(model_name):
        problem = weights_problem(model_name, pretrained)
        if problem:
            raise WeightsFileError(problem)
        try:
            model = open_clip.create_model(
                model_name, pretrained=pretrained, force_quick_gelu=pretrained == "openai", weights_only=True
            )
        except Exception as error:  # download and cache failures come in many types
            raise WeightsFileError(
                f"could not load {model_name} CLIP weights from open_clip's {pretrained!r} download: "
                f"{type(error).__name__}: {error}\n{_WEIGHTS_HELP}"
            ) from error
    else:
        raise WeightsFileError(
            f"CLIP weights {pretrained!r} for {model_name}: not a file and not an open_clip tag "
            f"(tags for {model_name}: {open_clip.list_pretrained_tags_by_model(model_name)}). "
            "Pass --model.init_args.pretrained /path/to/weights.pt, or null to start from random weights."
        )
    if image_size is not None:
        _resize_attnpool(model.visual, image_size)
    return model


class CLIPBackbone(nn.Module):
    """open_clip ResNet CLIP with feature-map, embedding and prompt-embedding access.

    Args:
        model_name: RN50 (default), RN101, RN50x4, or RN-tiny (small widths, for tests).
        pretrained: open_clip tag such as ``openai``, a local checkpoint path, or None (random).
        image_size: input size; the attention pool is resized to it for pretrained weights.
        freeze_image: no gradients for the image tower, and its BatchNorm statistics stay fixed
            (the tower stays in eval mode even when the model is set to train).
        freeze_text: the same for the text tower.
    """

    def __init__(
        self,
        model_name: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int | None = None,
        freeze_image: bool = True,
        freeze_text: bool = True,
    ):
        super().__init__()
        self.model_name = model_name
        self.clip = create_clip(model_name, pretrained, image_size)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.freeze_image = freeze_image
        self.freeze_text = freeze_text
        for parameter in self.image_parameters():
            parameter.requires_grad_(not freeze_image)
        for parameter in self.text_parameters():
            parameter.requires_grad_(not freeze_text)
        # CLIP's learned temperature stays as trained: the ranking model uses its own (0.2)
        self.clip.logit_scale.requires_grad_(False)
        # Lightning keeps each module's mode as set here: frozen towers eval, trainable ones train
        self.train()

    # -- parameters and modes -------------------------------------------------------------------
    @property
    def visual(self) -> nn.Module:
        """The open_clip image tower (a ModifiedResNet)."""
        return self.clip.visual

    def image_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the image tower."""
        return list(self.clip.visual.parameters())

    def text_parameters(self) -> list[nn.Parameter]:
        """Every parameter of the text tower."""
        visual = {id(p) for p in self.clip.visual.parameters()}
        return [p for n, p in self.clip.named_parameters() if id(p) not in visual and n != "logit_scale"]

    def train(self, mode: bool = True) -> CLIPBackbone:
        """Frozen towers stay in eval mode so their BatchNorm statistics never move."""
        super().train(mode)
        if self.freeze_image:
            self.clip.visual.eval()
        if self.freeze_text:
            for name, module in self.clip.named_children():
                if name != "visual":
                    module.eval()
        return self

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

    def feature_channels(self, layer: str) -> int:
        """Output channels of ``layer`` (layerN of a ModifiedResNet ends in width*2**(N+1))."""
        block = getattr(self.visual, layer)[-1]
        return block.bn3.num_features

    def freeze_after(self, layer: str) -> None:
        """No gradients for the image stages after ``layer`` and the attention pool.

        A model that reads ``layer``'s feature map never uses them (and DDP rejects unused trainable
        weights).
        """
        unused = [*FEATURE_LAYERS[FEATURE_LAYERS.index(layer) + 1 :], "attnpool"]
        for name in unused:
            getattr(self.visual, name).requires_grad_(False)

    # -- image side -----------------------------------------------------------------------------
    def feature_maps(
        self, images: torch.Tensor, layers: tuple[str, ...] = ("layer4",)
    ) -> dict[str, torch.Tensor]:
        """The requested stage outputs of the image tower, stopping after the deepest asked."""
        unknown = set(layers) - set(FEATURE_LAYERS)
        if unknown:
            raise ValueError(f"unknown feature layer(s) {sorted(unknown)}; choose from {FEATURE_LAYERS}")
        x = self.visual.stem(images.to(self.visual.conv1.weight.dtype))
        out: dict[str, torch.Tensor] = {}
        last = max(FEATURE_LAYERS.index(layer) for layer in layers)
        for name in FEATURE_LAYERS[: last + 1]:
            x = getattr(self.visual, name)(x)
            if name in layers:
                out[name] = x
        return out

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The pooled (attention-pool) image embedding."""
        features = self.clip.encode_image(images)
        return F.normalize(features, dim=-1) if normalize else features

    # -- text side ------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids of ``texts`` on the model's device."""
        return self.tokenizer(texts).to(self.clip.token_embedding.weight.device)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The token embedding of ``tokens`` (the input of prompt learning)."""
        return self.clip.token_embedding(tokens)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings of token ids."""
        return self.clip.encode_text(tokens, normalize=normalize)

    def encode_prompt_embeddings(
        self, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Text embeddings from prompt *embeddings* (learnable context), pooled at the EOT token.

        ``tokens`` only locates each sequence's end-of-text token (the highest id), as in CLIP's
        own ``encode_text``; with ``embeddings = token_embeddings(tokens)`` both paths agree.
        """
        clip = self.clip
        cast = clip.transformer.get_cast_dtype()
        x = embeddings.to(cast) + clip.positional_embedding.to(cast)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        x = x @ clip.text_projection
        return F.normalize(x, dim=-1) if normalize else x
