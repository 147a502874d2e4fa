"""Checks made before anything is built: every missing dataset folder and weights file, at once.

A run that would fail on a missing ``data/aptos2019`` after a minute of download retries, or on
missing weights after the data was read, instead stops in seconds with one message listing every
problem and the option that fixes each.
"""

from __future__ import annotations

from pathlib import Path

from drgrade.data.sources import SOURCES, synthetic_problem
from drgrade.errors import OptionError


def data_problems(data: dict, verb: str) -> list[str]:
    """Configured dataset roots without their download, and missing CSV sheets or predict folder.

    Args:
        data: the parsed ``data`` section.
        verb: the running verb (``predict`` with ``predict_dir`` reads no dataset).
    """
    if verb == "predict" and data.get("predict_dir"):
        folder = Path(data["predict_dir"])
        return [] if folder.is_dir() else [f"--data.predict_dir {folder}: no such folder"]
    if data.get("synthesize_if_missing"):  # the synthetic default is written on first use
        roots = [SOURCES[name].configured_root(data) for name in ("aptos2019", "messidor2")]
        problem = synthetic_problem([r for r in roots if r is not None])
        return [problem] if problem else []
    problems = []
    for source in SOURCES.values():
        root = source.configured_root(data)
        if root is None:
            continue
        if not (Path(root) / source.marker).exists():
            where = source.download.format(data=Path(root).parent).replace("\n", " ")
            problems.append(
                f"--data.{source.option} {root}: no {source.marker} there. Get it from {where}; or "
                f"pass --data.{source.option} /path/to/it, or null to leave {source.name} out"
            )
    for sheet in data.get("csv_sources") or []:
        if not Path(sheet).is_file():
            problems.append(f"--data.csv_sources: {sheet} not found")
    return problems


def weights_problems(model: dict) -> list[str]:
    """What stops the configured pretrained weights from loading (missing file, offline download)."""
    options = model.get("init_args") or {}
    if "pretrained" not in options or "backbone" not in options:
        return []
    from drgrade.models.backbones import weights_problems

    return weights_problems(options["backbone"], options["pretrained"], options.get("text_encoder"))


def preflight(config: dict, verb: str, fitted_on: dict | None = None) -> None:
    """Refuse to start, listing every problem, when data or weights are known to be missing.

    Args:
        config: the verb's parsed configuration (``data`` and ``model`` sections).
        verb: the running verb.
        fitted_on: the data options of the checkpoint given, if any (its own data is then named).
    """
    missing_data = data_problems(config["data"], verb)
    problems = missing_data + weights_problems(config["model"])
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        own = own_data_hint(fitted_on) if missing_data else ""
        raise OptionError(
            f"cannot start, {len(problems)} problem(s) found before reading anything:\n{listed}{own}"
        )


def own_data_hint(fitted_on: dict | None) -> str:
    """Where the checkpoint's own data was, when it is still there ("" otherwise)."""
    fitted_on = fitted_on or {}
    roots = {name: root for name, root in (fitted_on.get("roots") or {}).items() if root}
    synthetic = bool(fitted_on.get("synthesize_if_missing"))  # written again on first use
    if not roots or not (synthetic or all(Path(root).exists() for root in roots.values())):
        return ""
    given = " ".join(f"--data.roots.{name} {root}" for name, root in roots.items())
    demo = " (the demo's synthetic data: add --config configs/demo.yaml)" if synthetic else ""
    return f"\nto use the data this checkpoint was fitted on: {given}{demo}"
