"""What a run was: the code, the weights, the training, the data, the machine and the date.

Every ``validate`` / ``test`` writes it into metrics.json (``provenance``) and every report opens
with it, so a number is never read without what produced it: a two-epoch, random-weight run on
synthetic photographs says so beside its table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from drgrade import __version__

#: The fit run's summary beside its checkpoints (epochs run, best epoch), written at the end of fit.
TRAINING_FILE = "training.json"


def code_version() -> dict:
    """The version of drgrade, and the git commit of its source tree when it is a checkout (else None)."""
    source = Path(__file__).resolve().parent.parent
    commit = dirty = None
    if (source / ".git").exists():
        try:
            commit = _git(source, "rev-parse", "HEAD")
            dirty = bool(_git(source, "status", "--porcelain", "--untracked-files=no"))
        except (OSError, subprocess.SubprocessError):
            commit = dirty = None
    return {"drgrade": __version__, "git_commit": commit, "git_dirty": dirty}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise subprocess.SubprocessError(done.stderr)
    return done.stdout.strip()


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(accelerator: str, devices: int) -> dict:
    """Where the run ran: CPU, cores, the accelerator and device count used, the GPUs present."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "accelerator": accelerator,
        "devices": devices,
        "gpus": gpus,
        "torch": torch.__version__,
    }


def weights_record(backbone: str | None, pretrained: str | None) -> dict | None:
    """Which pretrained weights a backbone started from: a file or tag with its SHA-256, or random.

    Args:
        backbone: the architecture (None: the model has no backbone of its own, e.g. an ensemble).
        pretrained: a weights file, a download tag, or None (random initialisation).
    """
    if backbone is None:
        return None
    if pretrained is None:
        return {"backbone": backbone, "weights": "random", "sha256": None}
    from drgrade.files import file_sha256

    path = Path(pretrained).expanduser()
    if not path.is_file() and backbone != "flair":  # a download tag: the file open_clip cached
        from drgrade.models.downloads import open_clip_cached

        path = open_clip_cached(backbone, pretrained) or path
    digest = file_sha256(path) if path.is_file() else None
    return {"backbone": backbone, "weights": str(pretrained), "sha256": digest}


def training_record(checkpoint: str | None) -> dict:
    """Epochs run and the best epoch of the fit that wrote ``checkpoint`` (from its ``training.json``)."""
    if not checkpoint:
        return {}
    summary = Path(checkpoint).resolve().parent.parent / TRAINING_FILE
    return json.loads(summary.read_text()) if summary.is_file() else {}


def now() -> str:
    """The current time in UTC, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def data_record(datamodule) -> dict:
    """The data a run used: per source its root, whether it is synthetic and its images per split."""
    from collections import Counter

    from drgrade.data.sources import synthetic_state

    counts = Counter(zip((r.source for r in datamodule.records), datamodule.splits, strict=True))
    roots = datamodule.roots
    sources = {}
    for name in sorted({r.source for r in datamodule.records}):
        root = roots.get(name)
        synthetic = root is not None and synthetic_state(Path(root)) in ("complete", "incomplete")
        sources[name] = {
            "root": None if root is None else str(root),
            "synthetic": synthetic,
            **{split: counts[name, split] for split in ("train", "val", "test")},
        }
    identity = datamodule.split_identity or {}
    hp = datamodule.hparams
    return {
        "sources": sources,
        "excluded": len(datamodule.excluded),
        # labelled photographs kept although the quality gate refuses them, per source
        "quality_gate": {"mode": hp.quality_gate, "kept_refused": dict(datamodule.gate_flagged())},
        "image_size": hp.image_size,
        "split": identity.get("split"),
        "split_fingerprint": identity.get("fingerprint"),
        "split_seed": hp.split_seed,
    }


def training_sources(datamodule) -> dict[str, bool] | None:
    """The sources a model is fitted on, each with whether it is drgrade's synthetic data (None: no data)."""
    if datamodule is None or not getattr(datamodule, "records", None):
        return None
    return {name: entry["synthetic"] for name, entry in data_record(datamodule)["sources"].items()}


#: The ``checkpoint`` of every result of a trainable model run without one (``--allow_untrained``).
UNTRAINED = "UNTRAINED baseline (--allow_untrained, no checkpoint)"


def evaluation_record(trainer, task, origin: str = "") -> dict:
    """The ``provenance`` entry of a validate / test run's metrics.json.

    Args:
        trainer: the running trainer (its checkpoint, accelerator and data).
        task: the evaluated task.
        origin: the checkpoint as result files name it, or ``UNTRAINED`` (``Engine.announce``).
    """
    checkpoint = str(trainer.ckpt_path) if trainer.ckpt_path else None
    members = getattr(task, "members", None)
    return {
        "code": code_version(),
        "model": task.display_name,
        "weights": task.weights_record,
        "members": [m.weights_record for m in members] if members is not None else None,
        "checkpoint": origin or checkpoint,
        "untrained_baseline": origin == UNTRAINED,
        "checkpoint_epoch": task.checkpoint_epoch,
        "training": training_record(checkpoint),
        "data": data_record(trainer.datamodule),
        "seed": os.environ.get("PL_GLOBAL_SEED"),
        "machine": machine(
            type(trainer.accelerator).__name__.removesuffix("Accelerator"), trainer.num_devices
        ),
        "date": now(),
    }


def pretraining_overlap(task, sources: list[str]) -> dict | None:
    """The evaluated sources the backbone's pretrained weights were trained on (None: none).

    FLAIR's weights saw EyePACS, APTOS, IDRiD and DDR photographs; an evaluation on those sources
    measures, in part, images its backbone already knew, so its figures are optimistic.

    Args:
        task: the evaluated task (an ensemble counts its members' backbones).
        sources: the evaluated images' sources.
    """
    members = getattr(task, "members", None)
    records = [m.weights_record for m in members] if members is not None else [task.weights_record]
    seen = {name for record in records if record for name in record.get("pretraining", [])}
    overlap = sorted(seen & set(sources))
    if not overlap:
        return None
    backbones = sorted({record["backbone"] for record in records if record and record.get("pretraining")})
    return {
        "backbones": backbones,
        "sources": overlap,
        "note": f"the {', '.join(backbones)} weights were pretrained on {', '.join(overlap)} photographs, "
        "which this evaluation includes: its figures on those sources are optimistic",
    }
