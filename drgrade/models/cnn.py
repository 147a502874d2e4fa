"""Plain ImageNet CNNs from timm (EfficientNet, ConvNeXt, ...) with a 5-grade classifier.

timm is an optional dependency (``pip install drgrade[cnn]``); nothing here imports it until a
CNN is built. Pretrained weights are read as data like every other weights file
(``drgrade.models.weights.read_state_dict``): a file the user names, or the file of a timm tag
already in the Hugging Face cache. A tag that is not cached is downloaded by timm only when the
hub can be reached; offline, the error says at once which options fix it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from drgrade.errors import OptionError, WeightsFileError
from drgrade.grades import NUM_GRADES
from drgrade.models.downloads import offline, unavailable
from drgrade.models.weights import read_state_dict
from drgrade.suggest import did_you_mean

#: ``pretrained`` value meaning timm's default ImageNet weights of the architecture.
IMAGENET = "imagenet"
#: The weight files a timm tag's hub entry may hold, preferred first.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def timm_module():
    """The timm package, or an error saying how to install it."""
    try:
        import timm
    except ImportError:
        raise OptionError("the CNN baseline needs timm: pip install 'drgrade[cnn]'") from None
    return timm


def architecture_name(name: str) -> str:
    """``name`` when timm builds it; otherwise an error naming the closest architectures."""
    timm = timm_module()
    known = timm.list_models()
    if name not in known:
        hint = did_you_mean(name, known, otherwise=" (timm.list_models() lists them)")
        raise OptionError(f"model.init_args.cnn {name!r} is not a timm architecture{hint}")
    return name


def pretrained_config(name: str, pretrained: str):
    """The timm pretrained configuration of ``name`` with tag ``pretrained`` (``imagenet``: the default)."""
    full = name if pretrained == IMAGENET else f"{name}.{pretrained}"
    config = timm_module().models.get_pretrained_cfg(full)
    if config is None:
        raise OptionError(
            f"model.init_args.pretrained {pretrained!r}: timm has no such weights for {name} "
            "(pass imagenet, a timm tag, a weights file, or null for random weights)"
        )
    return config


def cached_weights(name: str, pretrained: str) -> Path | None:
    """The local file of a timm tag's weights when the Hugging Face cache holds it."""
    from huggingface_hub import try_to_load_from_cache

    hub = pretrained_config(name, pretrained).hf_hub_id
    for filename in HUB_FILES if hub else ():
        found = try_to_load_from_cache(hub, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def build_cnn(name: str, pretrained: str | None, drop_rate: float) -> nn.Module:
    """A timm ``name`` network with a 5-grade classifier, from ``pretrained`` weights.

    Args:
        name: a timm architecture (``efficientnet_b0``, ``efficientnet_b5``, ``convnext_tiny``).
        pretrained: None (random), a weights file, ``imagenet`` (timm's default ImageNet weights)
            or another timm tag (``ra_in1k``).
        drop_rate: dropout before the classifier.
    """
    timm = timm_module()
    network = timm.create_model(
        architecture_name(name), pretrained=False, num_classes=NUM_GRADES, drop_rate=drop_rate
    )
    if pretrained is None:
        return network
    path = Path(pretrained).expanduser()
    if not path.is_file():
        cached = cached_weights(name, pretrained)
        if cached is None and offline():
            what = f"{name} ImageNet weights {pretrained!r}"
            raise WeightsFileError(unavailable(what, "--model.init_args.pretrained", f"{name}.safetensors"))
        if cached is None:  # timm downloads them, then loads its own classifier-free copy
            full = name if pretrained == IMAGENET else f"{name}.{pretrained}"
            return timm.create_model(full, pretrained=True, num_classes=NUM_GRADES, drop_rate=drop_rate)
        path = cached
    load_body(network, read_state_dict(path), path)
    return network


def load_body(network: nn.Module, state: dict, path: Path) -> None:
    """Load every weight but the classifier (ImageNet's has 1000 classes) from ``state``.

    Raises:
        WeightsFileError: the file lacks weights of the network's body, or holds them in other shapes.
    """
    classifier = {id(p) for p in network.get_classifier().parameters()}
    own = network.state_dict()
    head = {n for n, p in network.named_parameters() if id(p) in classifier}
    wrong = [n for n in own if n not in head and (n not in state or state[n].shape != own[n].shape)]
    if wrong:
        raise WeightsFileError(
            f"{path}: not weights of this architecture ({len(wrong)} of its tensors missing or "
            f"of another shape, e.g. {wrong[:3]}); pass the weights of model.init_args.cnn"
        )
    network.load_state_dict({n: state[n] for n in own if n not in head}, strict=False)
