"""One checkpoint policy for every verb: a checkpoint knows its architecture.

Whatever the verb (``validate``, ``test``, ``predict``, ``explain``, ``export``, a resumed ``fit``;
``serve`` and ensemble members load through ``load_task``, which follows the same rule), a model
read from a checkpoint is rebuilt from the options the checkpoint recorded: its class, backbone,
image size and every other option, the data's image size (and so its normalisation) included.
The config files only supply what a checkpoint does not know (the data, the trainer), so the
README's ``predict --config configs/fcn_clip.yaml --ckpt_path best`` works whichever backbone and
image size the checkpoint was trained with. Options that name a file (``WEIGHT_SOURCES``, the
ensemble's member list) are never taken from a checkpoint.

What the user types on the command line still counts: an evaluation option (bootstrap resamples,
refitting the rule on ``validate``) applies; an architecture option that contradicts the
checkpoint is refused before anything runs, naming both values and the option to drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from drgrade.errors import OptionError
from drgrade.runs import architecture_options
from drgrade.tasks.loading import WEIGHT_SOURCES, checkpoint_task_class, recorded_options

#: Model options that decide what the weights mean: typed with another value than the checkpoint's, refused.
ARCHITECTURE = (
    "backbone",
    "image_size",
    "feature_layer",
    "decoder_widths",
    "reduction",
    "n_ctx",
    "ctx_init",
    "rank_token",
    "template_sets",
)
#: Model options naming files: never taken from a checkpoint (its weights and members are its own).
FILE_OPTIONS = (*WEIGHT_SOURCES, "checkpoints")


def typed_options(args: Sequence[str]) -> dict[str, str]:
    """The options typed on a command line, as ``section.name`` -> value (config files excluded).

    ``--model.init_args.backbone`` and ``--model.backbone`` are both ``model.backbone``;
    ``--model NAME`` and ``--model.class_path NAME`` are ``model.class_path``.

    Args:
        args: the command line after the verb.
    """
    typed: dict[str, str] = {}
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg.startswith("--config"):
            continue
        name, has_value, value = arg[2:].partition("=")
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
        name = name.replace(".init_args.", ".")
        typed["model.class_path" if name == "model" else name] = value
    return typed


def adopt_checkpoint(config: Any, checkpoint: Mapping, path: str | Path, typed: Mapping[str, str]) -> None:
    """Make the parsed ``config`` build the model ``checkpoint`` recorded (in place).

    Args:
        config: the verb's parsed configuration (``model`` and ``data`` sections).
        checkpoint: the checkpoint, read as data.
        path: its file, for messages.
        typed: the options typed on the command line (``typed_options``).

    Raises:
        OptionError: the config names another model class, or a typed architecture option
            contradicts the checkpoint.
    """
    task_class = checkpoint_task_class(checkpoint, path)
    named = str(config["model"]["class_path"]).rsplit(".", 1)[-1]
    if named != task_class.__name__:
        drop = (
            "drop --model"
            if "model.class_path" in typed
            else f"use --config configs/{task_class.run_name}.yaml instead of the {named} config"
        )
        raise OptionError(
            f"{path} is a {task_class.__name__} checkpoint, but the model given is {named}; {drop}"
        )
    recorded = recorded_options(checkpoint)
    init_args = config["model"]["init_args"]
    given = {"image_size": config["data"]["image_size"]} if "data.image_size" in typed else {}
    given |= {name: init_args.get(name) for name in ARCHITECTURE if f"model.{name}" in typed}
    for name, value in given.items():
        if name in recorded and not same(value, recorded[name]):
            option = "--data.image_size" if name == "image_size" else f"--model.init_args.{name}"
            raise OptionError(
                f"{option} {value} contradicts {path}, which was trained with {name} {recorded[name]}; "
                f"drop {option} (the checkpoint knows its architecture)"
            )
    for name, value in recorded.items():
        if name in init_args and name not in FILE_OPTIONS and f"model.{name}" not in typed:
            init_args[name] = value
    for name in WEIGHT_SOURCES:
        if name in init_args:
            init_args[name] = None
    for name, value in architecture_options(checkpoint).items():  # FLAIR's stored text tower
        init_args[name] = value
    if "image_size" in recorded:
        config["data"]["image_size"] = recorded["image_size"]


def same(given: Any, recorded: Any) -> bool:
    """Whether a typed option equals the recorded one (a list and a tuple of equal items are the same)."""
    sequence = (list, tuple)
    if isinstance(given, sequence) and isinstance(recorded, sequence):
        return list(given) == list(recorded)
    return given == recorded


#: The option that runs a trainable model without a checkpoint, and its label in every result.
ALLOW_UNTRAINED = "--allow_untrained"


def refuse_untrained(task_class_path: str, verb: str, root: str, allowed: bool) -> None:
    """Refuse to evaluate or grade with a model that has weights to train and none trained.

    Args:
        task_class_path: the configured model's class path.
        verb: the running verb.
        root: the run root, where ``--ckpt_path best`` looks.
        allowed: ``--allow_untrained`` was given (the untrained baseline, labelled as such).
    """
    from drgrade.tasks.loading import task_classes

    name = str(task_class_path).rsplit(".", 1)[-1]
    task = task_classes().get(name)
    if allowed or task is None or not task.trainable:
        return
    raise OptionError(
        f"drgrade {verb} of {name} needs a trained checkpoint: pass --ckpt_path best (the best run "
        f"under {root}), --ckpt_path last, or a .ckpt file; {ALLOW_UNTRAINED} runs the untrained "
        "baseline instead (labelled as such in every result)"
    )
