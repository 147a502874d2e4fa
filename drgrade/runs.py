"""Where a run's files go, and which earlier run ``--ckpt_path last / best / newest`` means.

Each run writes to its own versioned folder, so Lightning's in-process meaning of ``last`` /
``best`` would never find an earlier run's file; these look across the runs of a config:

- ``last``: the newest ``last.ckpt`` (to resume a fit);
- ``best``: among the runs' best checkpoints, the one with the best monitored validation score,
  of runs made with the same split settings as now (an accidental short run, or a run on
  another split, does not win because it is newer);
- ``newest``: the newest best checkpoint, whatever its score.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch

from drgrade.errors import CheckpointError

#: The split settings a checkpoint records that must match for ``best`` to consider it.
SPLIT_SETTINGS = ("split_ratios", "split_seed", "test_sources", "split")
#: drgrade's own checkpoint entries (written by ``BaseTask.on_save_checkpoint``).
TASK_KEY = "drgrade_task"
SPLIT_KEY = "drgrade_split"
CHOICE_KEY = "drgrade_threshold_choice"
SCORE_KEY = "drgrade_score"
#: The checkpoint entry recording what the model was trained from (weights, code version, seed).
TRAINING_KEY = "drgrade_training"
#: The checkpoint entry holding a FLAIR text tower's configuration and tokenizer files (text only).
TEXT_ENCODER_KEY = "drgrade_text_encoder"
#: The checkpoint entry recording whether an open_clip backbone runs QuickGELU (no tensor says so).
QUICK_GELU_KEY = "drgrade_quick_gelu"


def architecture_options(checkpoint: dict) -> dict:
    """Options that rebuild a checkpoint's architecture without reading any folder (FLAIR's text tower)."""
    files = checkpoint.get(TEXT_ENCODER_KEY)
    return {"text_encoder": dict(files)} if isinstance(files, dict) else {}


CHECKPOINT_CHOICES = ("last", "best", "newest")


def run_dir(trainer: L.Trainer) -> Path:
    """The run directory: the first logger's versioned folder, else ``default_root_dir``.

    ``trainer.log_dir`` broadcasts from rank 0 under DDP, so every rank must call this.
    """
    path = Path(trainer.log_dir or trainer.default_root_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def peek_checkpoint(path: str | Path) -> dict:
    """A checkpoint's entries with its tensors memory-mapped, not read (tensors-only unpickling)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def checkpoint_score(entries: dict) -> dict | None:
    """The validation score a checkpoint was saved with (``monitor``, ``mode``, ``value``), or None.

    Anything but a well-formed score (a dict with a finite number, a mode of max or min and a
    metric name) is no score: a checkpoint is untrusted input.

    Args:
        entries: the checkpoint (``peek_checkpoint``).
    """
    score = entries.get(SCORE_KEY) if isinstance(entries, dict) else None
    if not isinstance(score, dict):
        return None
    value = score.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    if score.get("mode", "max") not in ("max", "min") or not isinstance(score.get("monitor"), str):
        return None
    return score


def scored_candidate(path: Path, split: dict | None) -> tuple[dict | None, str]:
    """(score, "") of a ``best`` candidate, or (None, why it is passed over)."""
    try:
        entries = peek_checkpoint(path)
    except Exception as error:  # torch raises many types for a file that is not a safe checkpoint
        return None, f"not a readable checkpoint ({type(error).__name__})"
    score = checkpoint_score(entries)
    if score is None:
        return None, "no valid validation score"
    identity = entries.get(SPLIT_KEY)
    identity = identity if isinstance(identity, dict) else {}
    if split is not None and {key: identity.get(key) for key in SPLIT_SETTINGS} != split:
        return None, "another split"
    return score, ""


def find_checkpoint(
    root: str | Path, which: str, split: dict | None = None
) -> tuple[Path | None, dict | None]:
    """The checkpoint ``which`` means among the runs under ``root``, and its score for ``best``.

    For ``best``, a candidate that cannot be read, has no valid score or was fitted on another
    split is passed over (the unreadable and unscored ones are named on the console).

    Args:
        root: the config's run folder (``trainer.default_root_dir``).
        which: ``last``, ``best`` or ``newest``.
        split: the split settings now (``SPLIT_SETTINGS``); ``best`` only considers matching runs.
    """
    pattern = "last.ckpt" if which == "last" else "best-*.ckpt"
    found = sorted(Path(root).rglob(f"checkpoints/{pattern}"), key=lambda p: p.stat().st_mtime)
    if which != "best":
        return (found[-1] if found else None), None
    scored = []
    for path in found:
        score, why = scored_candidate(path, split)
        if score is not None:
            better = score["value"] if score.get("mode", "max") == "max" else -score["value"]
            scored.append((better, path.stat().st_mtime, str(path), score))
        elif why != "another split":
            print(f"--ckpt_path best: passed over {path}: {why}")
    if not scored:
        return None, None
    best = max(scored, key=lambda candidate: candidate[:3])
    return Path(best[2]), best[3]


def resolve_checkpoint(entry: str, root: str | Path, split: dict | None = None) -> str:
    """``entry`` itself, or for ``last`` / ``best`` / ``newest`` that checkpoint under ``root`` (printed)."""
    if entry not in CHECKPOINT_CHOICES:
        return entry
    found, score = find_checkpoint(root, entry, split)
    if found is None:
        hint = " with a validation score and the same split settings" if entry == "best" else ""
        raise CheckpointError(
            f"--ckpt_path {entry}: no {entry} checkpoint{hint} under {root}; "
            "train first with `drgrade fit` and the same config (or pass a .ckpt path)"
        )
    said = f" ({score['monitor']} {score['value']:.4f}, the best of the runs under {root})" if score else ""
    print(f"--ckpt_path {entry}: using {found}{said}")
    return str(found)
