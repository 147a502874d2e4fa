"""What a resumed checkpoint may steer: nothing outside this run's checkpoint folders.

Lightning's ``ModelCheckpoint`` keeps, in every checkpoint it writes, the paths of the files it
made (best, k-th best, last) and later deletes the ones it replaces. Resuming from a checkpoint
restores those paths, so a file you did not write could name any file on the machine: Lightning
checks the name textually against its folder (``Path.absolute()`` keeps ``..``), and
``<run>/checkpoints/../../../victim.txt`` passes. Before any callback restores its state, every
path it holds is resolved (links and ``..`` followed) and must lie inside the folder that
callback writes now; a state naming anything else is dropped whole and the run continues as a
fresh checkpoint history. Resuming into a new run folder (the usual case: the history names the
old run's files) drops it quietly; a history that claims this very folder yet names files
elsewhere can only have been crafted, and is dropped with a warning.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from drgrade.files import atomic_open
from drgrade.runs import peek_checkpoint

#: The training curves' file a CSV logger writes in every run folder.
CURVES = "metrics.csv"

#: The entries of ``ModelCheckpoint``'s state that name files it may delete later.
PATH_ENTRIES = ("best_model_path", "kth_best_model_path", "last_model_path")


def held_paths(state: dict[str, Any]) -> list[str]:
    """Every file path a ``ModelCheckpoint`` state names (empty entries left out)."""
    paths = [state.get(name) for name in PATH_ENTRIES]
    paths += list((state.get("best_k_models") or {}).keys())
    return [str(p) for p in paths if p]


def inside(path: str, folder: Path, itself: bool = False) -> bool:
    """Whether ``path``, resolved, lies inside ``folder`` (resolved); with ``itself``, is that folder."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop or an unusable name
        return False
    return resolved == folder if itself else resolved.is_relative_to(folder)


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
        written_here = folder is not None and inside(str(state.get("dirpath") or ""), folder, itself=True)
        outside = sorted({p for p in held_paths(state) if folder is None or not inside(p, folder)})
        if not outside:
            continue
        del states[key]
        dropped.append(key)
        if written_here:  # a history claiming this very folder, naming files elsewhere: crafted
            warnings.warn(
                f"{source} names checkpoint files outside this run's checkpoint folder ({outside[0]!r}"
                f"{f' and {len(outside) - 1} more' if len(outside) > 1 else ''}); its checkpoint history "
                "was not restored, so drgrade will delete none of them",
                stacklevel=2,
            )
    return dropped


def join_curves(checkpoint: Path, folder: Path) -> None:
    """Make a resumed fit's ``metrics.csv`` one curve: the resumed run's epochs, then this run's.

    A fit resumed from ``<run>/checkpoints/last.ckpt`` writes a new run folder whose CSV logger
    saw only the epochs after it, so its training curves started mid-way. The earlier run's rows up
    to the checkpoint's epoch (the ones it continued from; a later, interrupted epoch is left out)
    are put before this run's, under the union of both headers.

    Args:
        checkpoint: the checkpoint the fit resumed from.
        folder: the resumed fit's run folder.
    """
    earlier, resumed = checkpoint.parent.parent / CURVES, folder / CURVES
    if not (earlier.is_file() and resumed.is_file()) or earlier.resolve() == resumed.resolve():
        return
    epoch = peek_checkpoint(checkpoint).get("epoch")
    with earlier.open(newline="") as old, resumed.open(newline="") as new:
        before, after = csv.DictReader(old), csv.DictReader(new)
        carried = [row for row in before if row.get("epoch") and int(float(row["epoch"])) <= epoch]
        rows = carried + list(after)
        header = list(dict.fromkeys([*(before.fieldnames or []), *(after.fieldnames or [])]))
    with atomic_open(resumed, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
