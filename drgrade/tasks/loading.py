"""Loading checkpoints as data: ``weights_only`` unpickling and only drgrade's own task classes.

A checkpoint from someone else is untrusted input. ``torch.load(weights_only=False)`` would run
any code its pickle names, and importing a module named inside it would run that module, so
neither happens: tensors, containers and plain values load; anything else is refused with a
message naming the file.
"""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path

import torch

from drgrade.decision.checks import rule_problems
from drgrade.errors import CheckpointError
from drgrade.files import archive_problem
from drgrade.runs import TASK_KEY
from drgrade.tasks.architecture import check_architecture
from drgrade.tasks.base import BaseTask

#: Options that name a file the weights would come from. A checkpoint holds every weight, so a model
#: rebuilt from one reads none of them: a checkpoint can never point drgrade at a file to load.
WEIGHT_SOURCES = ("pretrained", "text_encoder")


def without_weight_sources(options: dict) -> dict:
    """``options`` with every weight source set to None (random init, overwritten by the state dict)."""
    return options | {name: None for name in WEIGHT_SOURCES if name in options}


def task_classes() -> dict[str, type[BaseTask]]:
    """Drgrade's concrete task classes by name (the only classes a checkpoint may name)."""
    found: dict[str, type[BaseTask]] = {}
    pending = list(BaseTask.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("drgrade.tasks.") and cls.run_name != BaseTask.run_name:
            found[cls.__name__] = cls
    return found


def accepted_options(task_class: type[BaseTask]) -> set[str]:
    """The ``--model.init_args.*`` names a task class takes (its own and its bases' constructors)."""
    names = set()
    for cls in task_class.__mro__:
        if "__init__" in vars(cls) and issubclass(cls, BaseTask):
            names |= set(inspect.signature(cls.__init__).parameters)
    return names - {"self", "kwargs", "args"}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint at ``path`` as plain data, unpickled with ``weights_only=True``.

    Args:
        path: the ``.ckpt`` file.
        map_location: where tensors load.

    Raises:
        CheckpointError: the file is missing, not a checkpoint, or asks to run code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `drgrade fit` first")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not the zip archive torch.save writes)")
    problem = archive_problem(path)
    if problem:
        raise CheckpointError(f"{path} was refused: {problem}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain values "
            f"({str(error).splitlines()[0][:200]}). drgrade never runs code from a checkpoint; "
            "use a checkpoint written by `drgrade fit`."
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    checkpoint_task_class(checkpoint, path)
    check_rule(checkpoint["state_dict"], path)
    return checkpoint


#: The decision rule's entries in a task's state dict.
RULE_ENTRIES = ("rule.temperature", "rule.thresholds", "rule.operating_cuts", "rule.uncertainty_cutoff")


def check_rule(state: dict, path: str | Path) -> None:
    """Refuse a checkpoint whose decision rule could not decide sanely (NaN, zero or negative values)."""
    missing = [name for name in RULE_ENTRIES if not isinstance(state.get(name), torch.Tensor)]
    if missing:
        raise CheckpointError(
            f"{path} has no decision rule ({', '.join(missing)} missing): it was not written by this "
            "version of `drgrade fit`; fit the model again"
        )
    temperature, thresholds, cuts, cutoff = (state[name].double().flatten().tolist() for name in RULE_ENTRIES)
    scalar = [v[0] if len(v) == 1 else float("nan") for v in (temperature, cutoff)]
    problems = rule_problems(scalar[0], thresholds, cuts, scalar[1])
    if problems:
        raise CheckpointError(f"{path}: its decision rule is broken ({'; '.join(problems)}); refit the model")


def checkpoint_task_class(checkpoint: dict, path: str | Path) -> type[BaseTask]:
    """The drgrade task class named in ``checkpoint``; refuses anything else.

    Args:
        checkpoint: the loaded checkpoint.
        path: its file, for messages.
    """
    entry = str(checkpoint.get(TASK_KEY, ""))
    name = entry.rsplit(":", 1)[-1]
    classes = task_classes()
    if name not in classes:
        raise CheckpointError(
            f"{path} names task {entry!r}, which is not a drgrade task "
            f"(one of {sorted(classes)}); it was not written by `drgrade fit`"
        )
    return classes[name]


def recorded_options(checkpoint: dict) -> dict:
    """The model options a checkpoint recorded (its constructor's arguments when it was saved)."""
    # LightningCLI adds private entries (``_class_path``, ``_instantiator``) to the hyperparameters
    return {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}


def load_task(path: str | Path, map_location: str | torch.device = "cpu") -> BaseTask:
    """Rebuild whichever drgrade task wrote the checkpoint at ``path``, loading it as data.

    The architecture comes from the options the checkpoint recorded, except those naming weight
    files (``WEIGHT_SOURCES``): the state dict supplies every weight.

    Args:
        path: the ``.ckpt`` file.
        map_location: where tensors load.
    """
    checkpoint = read_checkpoint(path, map_location)
    task_class = checkpoint_task_class(checkpoint, path)
    options = recorded_options(checkpoint)
    options = task_class.options_from_checkpoint(without_weight_sources(options), checkpoint, Path(path))
    check_architecture(options, checkpoint["state_dict"], path)
    try:
        task = task_class(**options)
    except TypeError as error:
        raise CheckpointError(f"{path}: its options do not build a {task_class.__name__} ({error})") from None
    task.load_submodules()
    try:
        task.load_state_dict(checkpoint["state_dict"], strict=task.strict_loading)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its weights do not fit a {task_class.__name__} ({str(error)[:300]}){_dme_hint(error)}"
        ) from None
    task.on_load_checkpoint(checkpoint)
    return task


def _dme_hint(error: RuntimeError) -> str:
    """What to do about a checkpoint saved before its model had a DME output (its DME weights missing)."""
    missing = str(error).partition("Missing key(s) in state_dict:")[2].partition("Unexpected key(s)")[0]
    if "dme_" not in missing:
        return ""
    return "; it was saved before this model had a DME output: fit it again with this drgrade"
