"""The report's opening block: what produced each column (code, weights, training, data, machine).

Read from each run's metrics.json ``provenance`` (``drgrade.provenance``); a run written before
provenance existed says "not recorded" rather than guessing.
"""

from __future__ import annotations

from collections.abc import Sequence

from drgrade.reporting import paper
from drgrade.reporting.markup import md


def _short(digest: str | None) -> str:
    return f"sha256 {digest[:12]}" if digest else "digest unknown"


def weights_text(record: dict | None, members: list | None) -> str:
    """``RN50, openai (sha256 3f2a...)``, ``RN-tiny, random initialisation``, or the ensemble's members."""
    if members is not None:
        return "members: " + "; ".join(weights_text(m, None) for m in members)
    if not record:
        return "not recorded"
    if record["weights"] == "random":
        return f"{record['backbone']}, random initialisation"
    return f"{record['backbone']}, {record['weights']} ({_short(record.get('sha256'))})"


def training_text(provenance: dict) -> str:
    """``20 epochs, best at epoch 15 (early stop)``; ``not trained``; or what is known."""
    if provenance.get("untrained_baseline"):
        return "UNTRAINED baseline (--allow_untrained): weights never trained, not a result"
    training = provenance.get("training") or {}
    if not training:
        epoch = provenance.get("checkpoint_epoch")
        return "not trained (validation choices only)" if epoch is None else f"checkpoint of epoch {epoch}"
    stop = ", stopped early" if training.get("stopped_early") else ""
    return (
        f"{training['epochs_run']} of {training['max_epochs']} epochs{stop}; "
        f"best at epoch {training.get('best_epoch')} (counted from 0, as in best-epoch=N.ckpt)"
    )


def data_text(data: dict) -> str:
    """Per source: ``aptos2019 (SYNTHETIC) 280/60/60`` (train/val/test)."""
    parts = []
    for name, source in (data.get("sources") or {}).items():
        kind = " (SYNTHETIC)" if source.get("synthetic") else ""
        parts.append(f"{name}{kind} {source['train']}/{source['val']}/{source['test']}")
    excluded = data.get("excluded")
    left = f"; {excluded} image(s) left out (listed in split.csv)" if excluded else ""
    gate = data.get("quality_gate") or {}
    kept = ", ".join(f"{n} {name}" for name, n in sorted((gate.get("kept_refused") or {}).items()))
    if kept:
        left += f"; kept though the quality gate refuses them ({gate['mode']}): {kept} (split.csv, gate)"
    return "; ".join(parts) + " (train/val/test)" + left


def machine_text(machine: dict) -> str:
    """``Intel Xeon (2 cores); CPU x1; torch 2.x``."""
    gpus = f"; GPUs: {', '.join(machine['gpus'])}" if machine.get("gpus") else ""
    return (
        f"{machine['cpu']} ({machine['cpu_cores']} cores); ran on {machine['accelerator']} "
        f"x{machine['devices']}{gpus}; torch {machine['torch']}"
    )


def code_text(code: dict) -> str:
    """``drgrade 0.3.0, git 1a2b3c4d (uncommitted changes)``."""
    commit = code.get("git_commit")
    if not commit:
        return f"drgrade {code['drgrade']} (not a git checkout)"
    dirty = " with uncommitted changes" if code.get("git_dirty") else ""
    return f"drgrade {code['drgrade']}, git {commit[:10]}{dirty}"


def _shared(label: str, values: list[tuple[str, str]]) -> str:
    """One line when every run agrees, else one line per run."""
    distinct = list(dict.fromkeys(md(text) for _, text in values))
    if len(distinct) == 1:
        return f"- {label}: {distinct[0]}"
    return f"- {label}:\n" + "\n".join(f"  - {md(run)}: {md(text)}" for run, text in values)


#: The lines every column shares (one line when the runs agree): label -> text of a provenance.
SHARED = {
    "Code": lambda p: code_text(p["code"]),
    "Data": lambda p: data_text(p["data"]),
    "Split": lambda p: (
        f"{p['data']['split']}, fingerprint {str(p['data']['split_fingerprint'])[:16]}, "
        f"split seed {p['data']['split_seed']}, seed {p.get('seed')}"
    ),
    "Machine": lambda p: machine_text(p["machine"]),
}


def column_row(label: str, provenance: dict) -> str:
    """One column's row of the provenance table."""
    checkpoint = provenance.get("checkpoint") or "none"
    name, _, digest = checkpoint.partition(" sha256:")
    shown = f"{name} ({_short(digest)})" if digest else name
    weights = weights_text(provenance.get("weights"), provenance.get("members"))
    cells = [label, shown, weights, training_text(provenance), provenance["data"]["image_size"]]
    return "| " + " | ".join(md(cell) for cell in cells) + " |"


def paper_note(recorded: list[dict]) -> str:
    """What this report's runs do differently from the paper's setup (its columns are shown)."""
    found = list(dict.fromkeys(d for p in recorded for d in paper.differences(p)))
    differs = (
        "This report differs from the paper's setup: " + "; ".join(found) + ". Compare with care."
        if found
        else "No difference from the paper's setup was found in the recorded provenance."
    )
    return f"The (paper) columns are the published numbers of {paper.CITATION}. {md(differs)}"


def provenance_block(runs: Sequence, with_paper: bool) -> str:
    """The Markdown block that opens the report.

    Args:
        runs: one ``RunResult`` per run folder.
        with_paper: add what differs from the paper's setup (its columns are shown).
    """
    known = [(run.label, run.document.get("provenance")) for run in runs]
    recorded = [(label, p) for label, p in known if p]
    lines = ["## Provenance", ""]
    if recorded:
        lines += [
            "| Column | Checkpoint | Backbone and weights | Training | Image size |",
            "|---|---|---|---|---|",
        ]
        lines += [column_row(label, p) for label, p in recorded]
        lines.append("")
        lines += [_shared(name, [(label, text(p)) for label, p in recorded]) for name, text in SHARED.items()]
        dates = sorted(p["date"] for _, p in recorded)
        until = f" to {md(dates[-1])}" if dates[-1] != dates[0] else ""
        lines.append(f"- Date (UTC): {md(dates[0])}{until}")
    overlaps = [
        (run.label, run.document["pretraining_overlap"])
        for run in runs
        if run.document.get("pretraining_overlap")
    ]
    for label, overlap in overlaps:
        lines.append(f"- **Pretraining overlap** ({md(label)}): {md(overlap['note'])}.")
    missing = [label for label, p in known if not p]
    if missing:
        listed = ", ".join(md(label) for label in missing)
        lines.append(f"- not recorded for: {listed} (written before drgrade kept provenance)")
    if with_paper and recorded:
        lines += ["", paper_note([p for _, p in recorded])]
    return "\n".join(lines) + "\n"
