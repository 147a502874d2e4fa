"""What a resumed checkpoint may steer: nothing outside this run's checkpoint folders.

Lightning's ``ModelCheckpoint`` keeps, in every checkpoint it writes, the paths of the files it
made (best, k-th best, last) and later deletes the ones it replaces. Resuming from a checkpoint
restores those paths, so a file you did not write could name any file on the machine: Lightning
checks the name textually against its folder (``Path.absolute()`` keeps ``..``), and
``<run>/checkpoints/../../../victim.txt`` passes. Before any callback restores its state, every
path it holds is resolved (links and ``..`` followed) and must lie inside the folder that
callback writes now; a state naming anything else is dropped whole, with a warning, and the run
continues as a fresh checkpoint history.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

#: The entries of ``ModelCheckpoint``'s state that name files it may delete later.
PATH_ENTRIES = ("best_model_path", "kth_best_model_path", "last_model_path")


def held_paths(state: dict[str, Any]) -> list[str]:
    """Every file path a ``ModelCheckpoint`` state names (empty entries left out)."""
    paths = [state.get(name) for name in PATH_ENTRIES]
    paths += list((state.get("best_k_models") or {}).keys())
    return [str(p) for p in paths if p]


def inside(path: str, folder: Path) -> bool:
    """Whether ``path``, resolved, is a file inside ``folder`` (resolved)."""
    try:
        return Path(path).resolve().is_relative_to(folder)
    except (OSError, RuntimeError, ValueError):  # a link loop or an unusable name
        return False


def confine_resumed_state(
    checkpoint: dict, callbacks: Iterable[Any], source: str = "the checkpoint"
) -> list[str]:
    """Drop, from ``checkpoint``, each checkpoint callback's state that names a file outside its folder.

    Args:
        checkpoint: the resumed checkpoint (changed in place).
        callbacks: the running trainer's callbacks.
        source: the checkpoint's name, for the warning.

    Returns:
        the state keys dropped.
    """
    states = checkpoint.get("callbacks")
    if not isinstance(states, dict):
        return []
    folders = {
        callback.state_key: Path(callback.dirpath).resolve()
        for callback in callbacks
        if isinstance(callback, ModelCheckpoint) and callback.dirpath
    }
    dropped = []
    for key, state in list(states.items()):
        if not isinstance(state, dict) or not any(name in state for name in (*PATH_ENTRIES, "best_k_models")):
            continue
        folder = folders.get(key)
        outside = sorted({p for p in held_paths(state) if folder is None or not inside(p, folder)})
        if outside:
            del states[key]
            dropped.append(key)
            warnings.warn(
                f"{source} names checkpoint files outside this run's checkpoint folder ({outside[0]!r}"
                f"{f' and {len(outside) - 1} more' if len(outside) > 1 else ''}); its checkpoint history "
                "was not restored, so drgrade will delete none of them",
                stacklevel=2,
            )
    return dropped
