"""Attention overlays per image, a model comparison sheet and lesion-mass scores.

Each model runs through ``Engine.explain`` (a predict pass with an ``AttentionWriter``); the
comparison sheet (the paper's Figure 1) and the lesion-mass summary are then built from the
saved maps and ``explain.csv`` files, the way ``report`` builds tables from ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from drgrade.commands.options import add_switch
from drgrade.data.dataset import FundusDataset, folder_records
from drgrade.data.sources import lesion_images
from drgrade.errors import OptionError
from drgrade.files import atomic_write_text, save_figure
from drgrade.grades import GRADE_NAMES
from drgrade.predictions import PROB_COLUMNS, checkpoint_label, read_rows
from drgrade.reporting.overlays import comparison_figure, lesion_mass_figure
from drgrade.runs import resolve_checkpoint
from drgrade.tasks import BaseTask, ZeroShotCLIP, load_task

#: ``--compare`` entry meaning the model of the ``--config`` files itself.
CONFIGURED = "config"


def add_arguments(parser) -> None:
    """``--out``, the checkpoints, ``--limit`` and ``--sheet_rows``.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlays and figures")
    parser.add_argument(
        "--ckpt_path", type=str | None, default=None, help="checkpoint of the configured model"
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        type=str,
        default=None,
        help=f"checkpoints to explain side by side; {CONFIGURED!r} is the configured model",
    )
    parser.add_argument("--limit", type=int | None, default=None, help="explain at most this many images")
    parser.add_argument("--sheet_rows", type=int, default=6, help="images on the comparison sheet")
    add_switch(
        parser,
        "--lesion_images",
        "explain the configured sources' lesion-segmentation images (IDRiD, DDR) instead of the test split",
    )


def configuring_checkpoint(config) -> str | None:
    """The checkpoint the model and data are configured from.

    ``--ckpt_path``, else the first one ``--compare`` names (unless it compares the configured
    model too): its image size and weights are the checkpoint's, as for every verb, and no
    pretrained weights are sought.
    """
    compared = config.get("compare") or []
    if config.get("ckpt_path") or not compared or CONFIGURED in compared:
        return config.get("ckpt_path")
    return compared[0]


def run(cli) -> None:
    """Explain every requested model on the test split (or ``data.predict_dir``).

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts, datamodule = cli.config, cli.datamodule
    dataset = _dataset(datamodule, opts.limit, opts.lesion_images)
    models = _models(cli, opts.compare or [opts.ckpt_path or CONFIGURED])
    for name, (task, origin) in models.items():
        cli.engine.explain(task, dataset, opts.out / name, name, origin)
    write_comparison(opts.out, list(models), dataset, opts.sheet_rows)
    summary = write_lesion_summary(opts.out, list(models))
    for name, values in summary.items():
        if name != "uniform_baseline":
            print(
                f"{name}: {values['mean']:.2%} of attention inside lesions, "
                f"{values['lift_over_uniform']:.2f}x a uniform map ({values['n']} images)"
            )
    print(f"explanations written to {opts.out}/")


def _dataset(datamodule, limit: int | None, segmentation: bool) -> FundusDataset:
    """The images to explain, with their lesion masks, preprocessed like the model's input."""
    if segmentation:
        records = lesion_images(datamodule.roots)
        if not records:
            raise OptionError(
                "--lesion_images found no lesion-segmentation images: set data.roots.idrid (its "
                "'A. Segmentation/' part) or data.roots.ddr (its 'lesion_segmentation/' part)"
            )
    elif datamodule.hparams.predict_dir:
        records, _ = folder_records(datamodule.hparams.predict_dir)
    else:
        datamodule.setup("test")
        records = datamodule.records_of("test")
    # unlabelled images are always gated; labelled ones as data.quality_gate says
    labelled = not segmentation and not datamodule.hparams.predict_dir
    quality = None if labelled and datamodule.hparams.quality_gate != "exclude" else datamodule.quality_limits
    return FundusDataset(
        records[:limit],
        datamodule.hparams.image_size,
        datamodule.eval_transform(),
        keep_errors=True,
        with_masks=True,
        quality=quality,
    )


def _models(cli, entries: list[str]) -> dict[str, tuple[BaseTask, str]]:
    """The configured model and/or checkpoints by display name, with their origins, checked against data."""
    size = cli.datamodule.hparams.image_size
    models: dict[str, tuple[BaseTask, str]] = {}
    for entry in entries:
        if entry == CONFIGURED:
            task, origin = cli.model, ""
            if task.trainable:
                raise OptionError(f"{type(task).__name__} needs --ckpt_path (a trained checkpoint)")
        else:
            path = resolve_checkpoint(entry, cli.trainer.default_root_dir)
            task, origin = load_task(path), checkpoint_label(path)
        if task.hparams.get("image_size") != size:
            raise OptionError(
                f"the model expects {task.hparams.get('image_size')} px images but data.image_size is "
                f"{size}; pass --data.image_size"
            )
        if tuple(map(tuple, task.normalisation())) != tuple(map(tuple, cli.datamodule.normalisation)):
            raise OptionError(
                f"{entry} normalises its inputs unlike the configured model ({task.hparams.get('backbone')} "
                "backbone): compare models of one backbone family, or explain each with its own config"
            )
        if isinstance(task, ZeroShotCLIP):
            task.selected_index()  # the template set chosen by `drgrade fit`, or a clear error
        name = task.display_name
        models[name if name not in models else f"{name}-{len(models)}"] = task, origin
    return models


def _read_rows(out: Path, name: str) -> list[dict]:
    return read_rows(out / name / "explain.csv")


def write_comparison(out: Path, names: list[str], dataset: FundusDataset, rows: int) -> None:
    """comparison.png from the saved maps: Mild cases first (as in Figure 1), then the rest."""
    saved = {name: np.load(out / name / "attention.npz") for name in names}
    shared = set.intersection(*(set(s["index"].tolist()) for s in saved.values())) if saved else set()
    order = sorted(shared, key=lambda i: (dataset.records[i].grade != 1, i))[:rows]
    if not order:
        return
    loaded = [dataset.load(i) for i in order]
    labels = [
        dataset.records[i].path.name
        + ("" if dataset.records[i].grade < 0 else f"\ntrue: {GRADE_NAMES[dataset.records[i].grade]}")
        for i in order
    ]
    columns = {}
    for name in names:
        position = {int(i): k for k, i in enumerate(saved[name]["index"])}
        by_file = {row["file"]: row for row in _read_rows(out, name)}
        cells = []
        for i in order:
            row = by_file[str(dataset.records[i].path)]
            attention = saved[name]["maps"][position[i]].astype(np.float32)
            probability = float(row[PROB_COLUMNS[int(row["grade"])]])
            cells.append((attention, f"{name}: {row['grade_name']} ({probability:.2f})"))
        columns[name] = cells
    images, masks = [image for image, _, _ in loaded], [mask for _, mask, _ in loaded]
    figure = comparison_figure(images, labels, columns, masks)
    save_figure(figure, out / "comparison.png", dpi=90)
    plt.close(figure)


def write_lesion_summary(out: Path, names: list[str]) -> dict:
    """lesion_mass.json and .png from the explain.csv files (empty when no image has a mask)."""
    summary: dict = {}
    areas: list[float] = []
    for name in names:
        rows = [r for r in _read_rows(out, name) if r["lesion_mass"]]
        if rows:
            summary[name] = {"mean": float(np.mean([float(r["lesion_mass"]) for r in rows])), "n": len(rows)}
            areas = [float(r["lesion_area"]) for r in rows]
    if not summary:
        return summary
    baseline = float(np.mean(areas))
    for values in summary.values():
        values["lift_over_uniform"] = values["mean"] / baseline
    summary["uniform_baseline"] = baseline
    atomic_write_text(out / "lesion_mass.json", json.dumps(summary, indent=2))
    figure = lesion_mass_figure(summary)
    save_figure(figure, out / "lesion_mass.png", dpi=100)
    plt.close(figure)
    return summary
