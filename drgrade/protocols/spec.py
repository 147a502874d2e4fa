"""A protocol file: which runs (seeds, folds, held-out sources, shot budgets) and which models.

A protocol is a YAML file, not code. The shipped ones (``drgrade/protocols/files/``) are named
by their stem (``--protocol seeds_folds``); any other file is named by its path. Keys:

- ``name``: the report folder's name (default: the file's stem);
- ``design``: ``paper`` (each model fit then tested on the usual split, the ensemble of some of
  them, Tables 3 and 4: ``paper.yaml``, what ``reproduce`` runs by default), ``folds`` (seeds x
  k folds, or seeds alone without ``folds``), ``leave_one_source_out`` or ``few_shot``;
- ``models``: image models by config name (any model config in the configs folder: shipped,
  ``fcn_clip``, ``fcn_clip_finetune`` (its image tower trained too), ``ranking``, ``zero_shot``,
  ``cnn_baseline`` (a timm CNN), or one of ``model_configs``: fit then test through the CLI, one
  run folder each) and adaptation models over the frozen backbone's embeddings
  (``linear_probe``, ``tip_adapter``, ``tip_adapter_f``, ``clip_adapter``);
- ``model_configs``: your own image models, ``{name: config file}`` (relative to the protocol
  file), named in ``models`` like the shipped ones;
- ``seeds``: the seeds (each draws the folds or split and seeds training);
- ``folds``: k; ``test``: ``rotated`` (each fold tests once) or ``fixed`` (one test split);
- ``sources``: the sources left out one at a time (default: every source read);
- ``shots``: training images per grade, drawn by patient;
- ``split_ratios``: train/val/test fractions; ``test_seed``: the seed of fixed splits;
- ``metrics``: the figures reported; ``bootstrap_resamples``: each run's test intervals;
- ``tta``: also test every image model's checkpoint with these test-time augmentation sets
  (``flip``, ``flip4``, ``rot4``, or a list of them: ``drgrade.tasks.tta``), each reported as
  ``<model>+<set>`` beside it (its effect, paired on the same runs);
- ``stages`` (``paper`` only): ``[fit, test]``, or ``[fit]`` for the checkpoints alone;
- ``ensemble`` (``paper`` only): the models whose best checkpoints are averaged into an
  ensemble, itself fit (calibrated on validation) and tested (empty: none);
- ``overlays``: config files every stage gets after the data's (relative to the protocol file;
  each model takes the model options it has), before the options on the command line.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from drgrade import CONFIGS
from drgrade.errors import OptionError
from drgrade.suggest import did_you_mean
from drgrade.tasks.tta import TTA_SETS

SHIPPED = Path(__file__).parent / "files"
DESIGNS = ("paper", "folds", "leave_one_source_out", "few_shot")
#: The stages a ``paper`` protocol may run, in order (a test needs the fit's checkpoint).
STAGES = (["fit", "test"], ["fit"])
#: The adaptation models over embeddings (``drgrade.protocols.adapters.ADAPTERS``).
ADAPTATION_MODELS = ("linear_probe", "tip_adapter", "tip_adapter_f", "clip_adapter")


@dataclass
class Protocol:
    """A parsed protocol file (see the module docstring)."""

    name: str
    design: str
    models: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    folds: int | None = None
    test: str = "rotated"
    sources: list[str] | None = None
    shots: list[int] = field(default_factory=list)
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    test_seed: int = 42
    metrics: list[str] = field(default_factory=lambda: ["qwk", "auroc_macro", "accuracy", "macro_f1"])
    bootstrap_resamples: int = 200
    tta: list[str] = field(default_factory=list)
    description: str = ""
    stages: list[str] = field(default_factory=lambda: ["fit", "test"])
    ensemble: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    model_configs: dict[str, str] = field(default_factory=dict)


def shipped_protocols() -> list[str]:
    """The names of the protocol files drgrade ships."""
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def protocol_path(entry: str | Path) -> Path:
    """The file ``entry`` names: a path, or a shipped protocol's name."""
    path = Path(entry)
    if path.is_file():
        return path
    shipped = SHIPPED / f"{entry}.yaml"
    if shipped.is_file():
        return shipped
    raise OptionError(
        f"--protocol {entry}: no such file and no shipped protocol of that name "
        f"(shipped: {', '.join(shipped_protocols())})"
    )


def load_protocol(entry: str | Path, configs: Path = CONFIGS) -> Protocol:
    """Read and check a protocol file; every problem names the file and the key.

    Args:
        entry: a protocol file, or the name of a shipped one.
        configs: the folder of model configs its image models are looked up in.
    """
    path = protocol_path(entry)
    raw = typed_keys(read_mapping(path), path)
    raw["overlays"] = [str(beside(path, entry, "overlay")) for entry in raw.get("overlays") or []]
    own = raw.get("model_configs") or {}
    raw["model_configs"] = {str(name): str(beside(path, file, "model config")) for name, file in own.items()}
    protocol = Protocol(**raw)
    check(protocol, path, configs)
    return protocol


def read_mapping(path: Path) -> dict:
    """The protocol file's keys, each known; ``design`` and ``models`` given; ``name`` defaulted."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first = " ".join(str(error).split())[:160]  # YAML's message spans lines: one line here
        raise OptionError(f"protocol {path} is not a YAML text file ({first})") from None
    if not isinstance(raw, dict):
        raise OptionError(f"protocol {path}: expected a mapping of keys (design, models, seeds, ...)")
    known = [f.name for f in fields(Protocol)]
    for key in raw:
        if key not in known:
            hint = did_you_mean(str(key), known, show=repr, n=1)
            raise OptionError(f"protocol {path}: unknown key {key!r}{hint}")
    raw.setdefault("name", path.stem)
    for key in ("design", "models"):
        if key not in raw:
            raise OptionError(f"protocol {path}: {key!r} is required")
    return raw


#: What each key of a protocol file holds: a type, [a list of it], {a mapping}, or a tuple of choices.
KINDS: dict[str, object] = {
    "name": str, "design": str, "models": [str], "seeds": [int], "folds": (int, None), "test": str,
    "sources": ([str], None), "shots": [int], "split_ratios": [float], "test_seed": int,
    "metrics": [str], "bootstrap_resamples": int, "tta": [str], "description": str, "stages": [str],
    "ensemble": [str], "overlays": [str], "model_configs": {str: str},
}  # fmt: skip
#: How an error names each kind.
WORDS = {str: "text", int: "a whole number", float: "a number", None: "null"}


def conforms(value: object, kind: object) -> bool:
    """Whether ``value`` is of ``kind`` (``KINDS``' notation; a bool is not a number)."""
    if isinstance(kind, tuple):
        return any(conforms(value, k) for k in kind)
    if isinstance(kind, list):
        return isinstance(value, list) and all(conforms(v, kind[0]) for v in value)
    if isinstance(kind, dict):
        ((key, item),) = kind.items()
        return isinstance(value, dict) and all(
            conforms(k, key) and conforms(v, item) for k, v in value.items()
        )
    if kind is None:
        return value is None
    numbers = (int, float) if kind is float else (kind,)
    return isinstance(value, numbers) and not isinstance(value, bool)


def kind_words(kind: object) -> str:
    """``a list of text``, ``a whole number or null``, ...: a kind as an error says it."""
    if isinstance(kind, tuple):
        return " or ".join(kind_words(k) for k in kind)
    if isinstance(kind, list):
        return f"a list of {kind_words(kind[0])}"
    if isinstance(kind, dict):
        ((key, item),) = kind.items()
        return f"a mapping of {kind_words(key)} to {kind_words(item)}"
    return WORDS[kind]


def typed_keys(raw: dict, path: Path) -> dict:
    """``raw`` with every value of its key's kind (one item may stand for a list of one), else refused.

    ``name`` names the report folder, so it is one plain folder name.
    """
    for key, value in raw.items():
        kind = KINDS[key]
        listed = kind[0] if isinstance(kind, tuple) else kind
        if isinstance(listed, list) and conforms(value, listed[0]):
            raw[key] = value = [value]  # models: zero_shot is models: [zero_shot]
        if not conforms(value, kind):
            raise OptionError(f"protocol {path}: {key} must be {kind_words(kind)}, not {value!r}")
    name = raw["name"]
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise OptionError(
            f"protocol {path}: name {name!r} must be a plain folder name (the report goes to reports/<name>/)"
        )
    return raw


def beside(protocol: Path, entry: str, what: str) -> Path:
    """The file an entry of the protocol names (``what``: an overlay, a model config), relative to it."""
    path = protocol.parent / Path(entry).expanduser()
    if not path.is_file():
        raise OptionError(f"protocol {protocol}: {what} {entry} not found (looked for {path})")
    return path


def model_configs_in(folder: Path) -> dict[str, Path]:
    """The model configs in ``folder`` by name: the YAML files naming a ``model.class_path``."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
            model = config.get("model") if isinstance(config, dict) else None
            if isinstance(model, dict) and model.get("class_path"):
                found[path.stem] = path
    return found


def config_of(protocol: Protocol, model: str, configs: Path) -> Path:
    """The config file of image model ``model``: its ``model_configs`` entry, else the configs folder's."""
    if model in protocol.model_configs:
        return Path(protocol.model_configs[model])
    found = model_configs_in(configs)
    if model not in found:
        raise OptionError(f"no model config {model}.yaml in {configs}{did_you_mean(model, found)}")
    return found[model]


def check(protocol: Protocol, path: Path, configs: Path) -> None:
    """Refuse values that cannot run, naming the file and key."""
    if protocol.design not in DESIGNS:
        raise OptionError(f"protocol {path}: design {protocol.design!r} is not one of {list(DESIGNS)}")
    if not protocol.models or not protocol.seeds:
        raise OptionError(f"protocol {path}: models and seeds must each list at least one entry")
    models = [*ADAPTATION_MODELS, *model_configs_in(configs), *protocol.model_configs]
    unknown = [m for m in protocol.models if m not in models]
    if unknown:
        raise OptionError(
            f"protocol {path}: unknown model(s) {unknown}{did_you_mean(str(unknown[0]), models, n=2)} "
            f"(an adaptation model, a model config in {configs}, or a name the protocol's model_configs "
            "maps to a config file)"
        )
    if protocol.design == "folds" and protocol.folds is not None and protocol.folds < 2:
        raise OptionError(f"protocol {path}: folds must be at least 2 (leave it out for seeds alone)")
    if protocol.test not in ("rotated", "fixed"):
        raise OptionError(f"protocol {path}: test must be rotated or fixed, got {protocol.test!r}")
    if protocol.design == "few_shot" and (not protocol.shots or min(protocol.shots) < 1):
        raise OptionError(f"protocol {path}: few_shot needs shots, e.g. [1, 2, 4, 8, 16]")
    augmentations = [t for t in TTA_SETS if t != "none"]
    if not isinstance(protocol.tta, list) or any(t not in augmentations for t in protocol.tta):
        raise OptionError(
            f"protocol {path}: tta must be one of {augmentations} or a list of them, got {protocol.tta!r}"
        )
    if protocol.bootstrap_resamples < 0:
        raise OptionError(f"protocol {path}: bootstrap_resamples must be >= 0")
    check_paper(protocol, path)


def check_paper(protocol: Protocol, path: Path) -> None:
    """A ``paper`` protocol runs image models, its stages in order, an ensemble of its own models."""
    if protocol.design != "paper":
        if protocol.stages != ["fit", "test"] or protocol.ensemble:
            raise OptionError(f"protocol {path}: stages and ensemble belong to design: paper")
        return
    others = [m for m in protocol.models if m in ADAPTATION_MODELS]
    if others:
        raise OptionError(f"protocol {path}: design paper runs image models only, not {others}")
    if protocol.stages not in STAGES:
        raise OptionError(f"protocol {path}: stages must be [fit, test] or [fit], got {protocol.stages}")
    strangers = [m for m in protocol.ensemble if m not in protocol.models]
    if strangers or len(protocol.ensemble) == 1:
        raise OptionError(
            f"protocol {path}: ensemble must name at least two of its models {protocol.models}"
            + (f" (not {strangers})" if strangers else "")
        )
