"""What ``reproduce`` hands on to every stage it runs, each model taking the options it has.

``reproduce`` runs each model's ``fit`` and ``test`` through ``DRGradeCLI``: the model's config,
then ``StageOptions``, the config files and options every stage gets, in order (later wins): the
data's (the demo's overlays, or the downloads found under ``--data``), a protocol file's
``overlays``, and what the user typed for the stages on reproduce's command line (``--config``,
``--seed_everything``, ``--model.*``, ``--data.*``, ``--trainer.*``).

They are checked once, before any stage runs, against ``option_names()`` (the list every
``drgrade`` verb suggests from) and a config file's model options likewise, naming the file. A
model option only some models have goes to those (``--model.init_args.decoder_widths`` to
FCN-CLIP, not to zero-shot); a config file whose model section a model takes only in part is
handed to it without those options, in memory (an inline config: no copy is written).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from drgrade.commands import CLOSED_OPTIONS
from drgrade.errors import OptionError
from drgrade.suggest import did_you_mean, option_is_known

#: The stage parser's sections: an option under one of them is for the stages.
SECTIONS = ("--model.", "--data.", "--trainer.")
#: The stage parser's top-level options reproduce hands on.
TOP_LEVEL = ("--config", "--seed_everything")


def is_stage_option(name: str) -> bool:
    """Whether option ``name`` is one the stages take rather than ``reproduce`` itself."""
    return name.startswith(SECTIONS) or name in TOP_LEVEL


def model_key(name: str) -> str:
    """``--model.init_args.lr`` and ``--model.lr`` -> ``lr``."""
    return name.removeprefix("--model.").removeprefix("init_args.")


def read_config(path: str) -> dict:
    """A config file's contents (an empty file is an empty config), or an inline config's (``{...}``)."""
    try:
        text = path if path.lstrip().startswith("{") else Path(path).read_text(encoding="utf-8")
        config = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OptionError(f"config {path}: cannot be read as YAML ({first})") from None
    if not isinstance(config, dict):
        raise OptionError(
            f"config {path}: expected sections (model, data, trainer), not {type(config).__name__}"
        )
    return config


def model_options(config: dict) -> dict:
    """The model options a config sets (its ``model.init_args``, or ``model`` without one)."""
    model = config.get("model")
    if not isinstance(model, dict):
        return {}
    options = model.get("init_args", model)
    return {k: v for k, v in options.items() if k not in ("class_path", "init_args")}


def config_options(config: dict) -> list[str]:
    """The options a config file sets, as command-line names (``--data.batch_size``).

    A section given as a file of its own (``trainer: trainer.yaml``) is left to the stage parser.
    """
    names = []
    for key, value in config.items():
        if key == "model":
            names += [f"--model.init_args.{name}" for name in model_options(config)]
        elif key in ("data", "trainer"):
            names += [f"--{key}.{name}" for name in value] if isinstance(value, dict) else []
        else:
            names.append(f"--{key}")
    return names


@dataclass(frozen=True)
class StageOptions:
    """Config files and options for every stage: ``(name, value)`` pairs in order, later winning.

    ``("--config", path)`` is a config file; any other pair is one option.
    """

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, object]]) -> StageOptions:
        """From ``(option, value)`` pairs; values that are not text are written as JSON."""
        return cls(tuple((name, v if isinstance(v, str) else json.dumps(v)) for name, v in pairs))

    @classmethod
    def configs(cls, paths: Iterable[str | Path]) -> StageOptions:
        """Config files, in order."""
        return cls(tuple(("--config", str(path)) for path in paths))

    def __add__(self, other: StageOptions) -> StageOptions:
        """These, then ``other`` (whose values win)."""
        return StageOptions(self.items + other.items)

    def check(self, known: list[str]) -> None:
        """Refuse an option or a config file's model option no stage takes, before anything runs.

        Args:
            known: every option a stage takes (``drgrade.commands.lightning.option_names``).
        """
        for name, value in self.items:
            if name == "--model.class_path" or name == "--model":
                raise OptionError(
                    f"{name}: reproduce runs the models its protocol names; to train another, use drgrade "
                    "fit, or name its config in a protocol file (--protocol FILE)"
                )
            if name == "--config":
                self.check_config(value, known)
            elif not option_is_known(name, known, closed=CLOSED_OPTIONS):
                raise OptionError(f"unknown option {name}{did_you_mean(name, known)}")

    @staticmethod
    def check_config(path: str, known: list[str]) -> None:
        """Refuse a config file that sets an option no stage takes, or a section that is no mapping."""
        config = read_config(path)
        model = config.get("model")
        if model is not None and not (isinstance(model, dict) and "class_path" not in model):
            named = model.get("class_path") if isinstance(model, dict) else model
            raise OptionError(
                f"{path}: its model section names a model ({named!r}); reproduce runs the models its "
                "protocol names, so an overlay gives model options only (model: init_args: ...)"
            )
        for section in ("data", "trainer"):
            if section in config and not isinstance(config[section], dict | str):
                raise OptionError(
                    f"{path}: {section} must be a mapping of options (or a config file's name), not "
                    f"{config[section]!r}"
                )
        for option in config_options(config):
            if not option_is_known(option, known, closed=CLOSED_OPTIONS):
                hint = did_you_mean(option, known)
                raise OptionError(f"unknown option {option} (set in {path}){hint}")

    def check_taken(self, accepted: dict[str, set[str]]) -> None:
        """Refuse a model option none of the models runs takes: it would be dropped from every stage.

        Args:
            accepted: the model options each model the protocol runs takes, by model name.
        """
        every = set().union(*accepted.values())
        for name, value in self.items:
            if name == "--config":
                given = [
                    (f"--model.init_args.{key}", f" (set in {value})")
                    for key in model_options(read_config(value))
                ]
            else:
                given = [(name, "")] if name.startswith("--model.") else []
            for option, where in given:
                if model_key(option) not in every:
                    models = ", ".join(accepted)
                    raise OptionError(
                        f"{option}{where}: none of the models this protocol runs ({models}) takes it; drop "
                        "it, or run a model that does"
                    )

    def arguments(self, accepted: set[str]) -> list[str]:
        """The command-line arguments for a model that takes the model options ``accepted``.

        A model option it does not take is left out; a config file setting some is given as an
        inline config without them.
        """
        args: list[str] = []
        for name, value in self.items:
            if name == "--config":
                args += ["--config", config_for(value, accepted)]
            elif not name.startswith("--model.") or model_key(name) in accepted:
                args += [name, value]
        return args


def config_for(path: str, accepted: set[str]) -> str:
    """``path``, or its contents as inline JSON without the model options a model does not take."""
    config = read_config(path)
    options = model_options(config)
    if all(key in accepted for key in options):
        return path
    kept = {k: v for k, v in options.items() if k in accepted}
    model = dict(config["model"])
    if "init_args" in model:
        model["init_args"] = kept
    else:
        model = {k: v for k, v in model.items() if k == "class_path"} | kept
    return json.dumps({**config, "model": model}, default=str)


def split_command_line(args: list[str]) -> tuple[list[str], StageOptions]:
    """``reproduce``'s own arguments, and the stage options typed among them, in order.

    An option is the stages' by its name (``is_stage_option``): reproduce's own ``--data DIR``
    and the stages' ``--data.image_size`` share a first word, so no single parser reads both.
    Each stage option takes one value (``--name value`` or ``--name=value``).
    """
    own: list[str] = []
    taken: list[tuple[str, str]] = []
    rest = iter(args)
    for arg in rest:
        name, has_value, value = arg.partition("=")
        if not is_stage_option(name):
            own.append(arg)
            continue
        if not has_value:
            value = next(rest, None)
            if value is None:
                raise OptionError(f"{name} needs a value")
        taken.append((name, value))
    return own, StageOptions(tuple(taken))
