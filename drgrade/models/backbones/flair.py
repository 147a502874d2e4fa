"""FLAIR (Silva-Rodriguez et al., Medical Image Analysis 2025; github jusiro/FLAIR): a retina CLIP.

The weights the paper's own code loaded (``flair_resnet.pth``): a torchvision ResNet-50 image
tower and a Bio_ClinicalBERT text tower, each followed by a projection to 512 between two L2
normalisations, and a learned logit scale. This module mirrors FLAIR's ``FLAIRModel`` attribute
for attribute (``self.flair.vision_model.model``, ``...projection_head_vision.projection``,
``self.flair.text_model.model``, ``...projection_head_text.projection``, ``logit_scale``), so
FLAIR's file loads key for key. A text embedding is computed as FLAIR computes it: the mean over
every token position (padding included) of BERT's hidden states 1, 2 and the last, averaged over
the three, then projected; prompts are padded to the longest of their batch, as FLAIR's
tokenizer call does. Images are scaled to 0-1 with no mean or standard deviation, as FLAIR's
preprocessing does (its input size is 512 px).

The text tower's architecture and vocabulary come from a Hugging Face model folder
(``text_encoder``: FLAIR used ``emilyalsentzer/Bio_ClinicalBERT``); only its configuration and
tokenizer files are read, never weights (those are in FLAIR's file). A drgrade checkpoint stores
those files' text, so a saved model needs neither the folder nor the FLAIR file again.
``pip install 'drgrade[flair]'`` brings ``transformers``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from drgrade.errors import OptionError, WeightsFileError
from drgrade.models.backbones.base import FEATURE_LAYERS, Backbone
from drgrade.models.weights import read_state_dict

#: The text files of a Hugging Face model folder that define a text tower (no weights among them).
TEXT_FILES = (
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
#: Keys FLAIR's file may hold that newer ``transformers`` no longer keeps (a buffer, not a weight).
VERSION_KEYS = frozenset({"text_model.model.embeddings.position_ids"})
#: FLAIR's clamp of the log logit scale (at most 100, as in CLIP).
MAX_LOG_SCALE = 4.6052
#: What FLAIR's image tower expects: 0-1 pixels, no mean or standard deviation.
NORMALISATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
#: The drgrade sources among FLAIR's pretraining datasets (its ``dictionary.py``).
PRETRAINING = ("eyepacs", "aptos2019", "idrid", "ddr")
#: FLAIR's caption for a text prompt, and the maximum token count it sets.
CAPTION = "A fundus photograph of {}"
MAX_TOKENS = 77
_HELP = (
    "FLAIR needs --model.init_args.text_encoder DIR, a Hugging Face folder of FLAIR's text model "
    "(emilyalsentzer/Bio_ClinicalBERT: its config and tokenizer files are read, never its weights), "
    "and --model.init_args.pretrained FILE, FLAIR's flair_resnet.pth (github.com/jusiro/FLAIR), or "
    "null for random weights; pip install 'drgrade[flair]' for transformers"
)


def text_encoder_files(text_encoder: str | Path | Mapping[str, str]) -> dict[str, str]:
    """The text tower's definition: its folder's text files (or the stored copy of them)."""
    if isinstance(text_encoder, Mapping):
        return dict(text_encoder)
    folder = Path(text_encoder).expanduser()
    if not (folder / "config.json").is_file():
        raise OptionError(f"--model.init_args.text_encoder {folder}: no config.json there. {_HELP}")
    return {name: (folder / name).read_text() for name in TEXT_FILES if (folder / name).is_file()}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise OptionError(f"the flair backbone needs transformers, which is not installed. {_HELP}") from None
    transformers.logging.set_verbosity_error()
    return transformers


class _Projection(nn.Module):
    """FLAIR's ``ProjectionLayer``: L2-normalise, project (no bias), L2-normalise."""

    def __init__(self, width: int, out: int = 512):
        super().__init__()
        self.projection = nn.Linear(width, out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / x.norm(dim=-1, keepdim=True)
        x = self.projection(x)
        return x / x.norm(dim=-1, keepdim=True)


class _VisionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = torchvision.models.resnet50(weights=None)
        self.model.fc = nn.Identity()
        self.projection_head_vision = _Projection(2048)


class _TextModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = _transformers().AutoModel.from_config(config)
        self.projection_head_text = _Projection(config.hidden_size)


class _FlairModel(nn.Module):
    """FLAIR's ``FLAIRModel`` layout: the names its state dict uses."""

    def __init__(self, config):
        super().__init__()
        self.vision_model = _VisionModel()
        self.text_model = _TextModel(config)
        self.logit_scale = nn.Parameter(torch.log(torch.tensor(1 / 0.07)))


class FlairBackbone(Backbone):
    """FLAIR's towers behind drgrade's backbone interface.

    Args:
        pretrained: FLAIR's ``flair_resnet.pth`` (read as tensors only), or None (random).
        text_encoder: the Hugging Face folder of its text model, or the stored copy of its files.
        freeze_image: see ``Backbone``.
        freeze_text: see ``Backbone``.
    """

    family = "flair"
    cam_layer = "layer4"

    def __init__(
        self,
        pretrained: str | None,
        text_encoder: str | Path | Mapping[str, str] | None,
        freeze_image: bool = True,
        freeze_text: bool = True,
    ):
        super().__init__(freeze_image, freeze_text)
        if text_encoder is None:
            raise OptionError(_HELP)
        self.text_files = text_encoder_files(text_encoder)
        config, self.tokenizer = self._definition(self.text_files)
        self.flair = _FlairModel(config)
        if pretrained is not None:
            self._load(Path(pretrained).expanduser())
            self.pretraining_datasets = PRETRAINING
        self.image_tower = self.flair.vision_model
        self.flair.logit_scale.requires_grad_(False)
        self.finish_freezing()

    @staticmethod
    def _definition(files: Mapping[str, str]):
        """(BERT configuration, tokenizer) from the text files, read from a private folder."""
        transformers = _transformers()
        with tempfile.TemporaryDirectory() as folder:
            for name, text in files.items():
                if name in TEXT_FILES:
                    (Path(folder) / name).write_text(text)
            config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        tokenizer.model_max_length = MAX_TOKENS
        return config, tokenizer

    def _load(self, path: Path) -> None:
        """FLAIR's file, key for key; anything missing or unknown is an error naming it."""
        if not path.is_file():
            raise WeightsFileError(f"--model.init_args.pretrained {path}: no such file. {_HELP}")
        state = {k: v for k, v in read_state_dict(path).items() if k not in VERSION_KEYS}
        missing, unexpected = self.flair.load_state_dict(state, strict=False)
        if missing or unexpected:
            listed = [f"missing {k}" for k in missing[:5]] + [f"unexpected {k}" for k in unexpected[:5]]
            raise WeightsFileError(
                f"{path} is not FLAIR's state dict for this text model ({len(missing)} missing, "
                f"{len(unexpected)} unexpected keys: {', '.join(listed)})"
            )

    # -- towers ---------------------------------------------------------------------------------
    @property
    def resnet(self) -> nn.Module:
        """The torchvision ResNet-50 of the image tower."""
        return self.flair.vision_model.model

    @property
    def bert(self) -> nn.Module:
        """The BERT of the text tower."""
        return self.flair.text_model.model

    def text_modules(self) -> list[nn.Module]:
        """The text model (BERT and its projection)."""
        return [self.flair.text_model]

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """0-1 pixels, as FLAIR's preprocessing gives them."""
        return NORMALISATION

    @property
    def embed_dim(self) -> int:
        """FLAIR's projection width (512)."""
        return self.flair.vision_model.projection_head_vision.projection.out_features

    @property
    def logit_scale(self) -> torch.Tensor:
        """FLAIR's learned logit scale, clamped as FLAIR clamps it."""
        return self.flair.logit_scale.clamp(0, MAX_LOG_SCALE).exp()

    # -- image side -----------------------------------------------------------------------------
    def feature_channels(self, layer: str) -> int:
        """1024 for layer3, 2048 for layer4."""
        return getattr(self.resnet, layer)[-1].bn3.num_features

    def freeze_after(self, layer: str) -> None:
        """No gradients for what follows ``layer``: layer4 (after layer3) and the projection."""
        if layer == "layer3":
            self.resnet.layer4.requires_grad_(False)
        self.flair.vision_model.projection_head_vision.requires_grad_(False)

    def feature_maps(
        self, images: torch.Tensor, layers: Sequence[str] = ("layer4",)
    ) -> dict[str, torch.Tensor]:
        """The ResNet's stage outputs, stopping after the deepest asked."""
        unknown = set(layers) - set(FEATURE_LAYERS)
        if unknown:
            raise ValueError(f"unknown feature layer(s) {sorted(unknown)}; choose from {FEATURE_LAYERS}")
        net = self.resnet
        x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
        x = net.layer2(net.layer1(x))
        out: dict[str, torch.Tensor] = {}
        for name in FEATURE_LAYERS:
            x = getattr(net, name)(x)
            if name in layers:
                out[name] = x
            if len(out) == len(layers):
                break
        return out

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """FLAIR's image embedding (already L2-normalised by its projection head)."""
        return self.flair.vision_model.projection_head_vision(self.resnet(images))

    def cam_activations(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's map."""
        return self.feature_maps(images, ("layer4",))["layer4"]

    def cam_embedding(self, activations: torch.Tensor) -> torch.Tensor:
        """Average pool and projection of the last stage's map."""
        pooled = torch.flatten(self.resnet.avgpool(activations), 1)
        return self.flair.vision_model.projection_head_vision(pooled)

    # -- text side ------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """BERT token ids, padded to the longest text (as FLAIR's tokenizer call pads them)."""
        tokens = self.tokenizer(texts, truncation=True, padding=True, return_tensors="pt")["input_ids"]
        return tokens.to(self.flair.logit_scale.device)

    def _mask(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens != self.tokenizer.pad_token_id).long()

    def end_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """The [SEP] token: the last one before the padding."""
        return self._mask(tokens).sum(dim=1) - 1

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """BERT's word embeddings of ``tokens`` (position and segment embeddings are added inside BERT)."""
        return self.bert.embeddings.word_embeddings(tokens)

    def encode_prompt_embeddings(
        self, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """FLAIR's text embedding: hidden states 1, 2 and last, averaged over tokens and layers, projected."""
        output = self.bert(
            inputs_embeds=embeddings, attention_mask=self._mask(tokens), output_hidden_states=True
        )
        states = output.hidden_states
        embed = torch.stack([states[1], states[2], states[-1]]).permute(1, 0, 2, 3).mean(2).mean(1)
        return self.flair.text_model.projection_head_text(embed)
