"""``drgrade explain``: attention overlays per image, a model comparison sheet (the paper's
Figure 1), and the lesion-mass fraction of each model's attention on images with known lesions."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import UNKNOWN, folder_records
from drgrade.data.images import ImageReadError, read_rgb
from drgrade.data.preprocess import crop_fundus, fundus_box, resize_square
from drgrade.data.sources import Record
from drgrade.data.synthetic import MASK_DIR
from drgrade.evaluation.attention import attention_maps, lesion_mass_fraction
from drgrade.evaluation.report import COLUMN_NAMES
from drgrade.grades import GRADE_NAMES
from drgrade.runs import resolve_checkpoint
from drgrade.tasks import BaseTask, ZeroShotCLIP, load_task


@dataclass
class Sample:
    record: Record
    image: np.ndarray  # preprocessed RGB
    mask: np.ndarray | None  # lesion mask aligned with ``image``, when one exists


def mask_path(image_path: Path) -> Path:
    """Where the synthetic generator (or a user) keeps an image's lesion mask."""
    return image_path.parent.parent / MASK_DIR / f"{image_path.stem}.png"


def load_sample(record: Record, size: int) -> Sample:
    """The image cropped and resized as for the model, and its mask cropped identically."""
    image = read_rgb(record.path)
    box = fundus_box(image)
    mask = None
    if mask_path(record.path).is_file():
        raw = cv2.imread(str(mask_path(record.path)), cv2.IMREAD_GRAYSCALE)
        if raw is not None and raw.shape == image.shape[:2]:
            mask = resize_square(crop_fundus(raw, box), size, cv2.INTER_NEAREST)
    return Sample(record, resize_square(crop_fundus(image, box), size), mask)


def overlay(image: np.ndarray, attention: np.ndarray) -> np.ndarray:
    heat = plt.get_cmap("jet")(attention)[..., :3]
    return (0.55 * image / 255.0 + 0.45 * heat).clip(0, 1)


def title(sample: Sample, grade: int, prob: float) -> str:
    true = "" if sample.record.grade == UNKNOWN else f"true {GRADE_NAMES[sample.record.grade]} | "
    return f"{true}predicted {GRADE_NAMES[grade]} ({prob:.2f})"


def save_overlay(
    path: Path, sample: Sample, attention: np.ndarray, name: str, method: str, grade: int, prob: float
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
    axes[0].imshow(sample.image)
    axes[0].set_title("input (preprocessed)", fontsize=9)
    axes[1].imshow(overlay(sample.image, attention))
    axes[1].set_title(f"{name}: {method}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title(sample, grade, prob), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def comparison_sheet(path: Path, samples: list[Sample], results: dict[str, list], rows: int) -> None:
    """Rows of images (Mild cases first, as in Figure 1), columns: input then each model."""
    order = sorted(range(len(samples)), key=lambda i: (samples[i].record.grade != 1, i))[:rows]
    names = list(results)
    fig, axes = plt.subplots(
        len(order), len(names) + 1, figsize=(3 * (len(names) + 1), 3.1 * len(order)), squeeze=False
    )
    for row, i in enumerate(order):
        axes[row, 0].imshow(samples[i].image)
        true = samples[i].record.grade
        axes[row, 0].set_title(
            "input" + ("" if true == UNKNOWN else f" (true {GRADE_NAMES[true]})"), fontsize=9
        )
        for col, name in enumerate(names, start=1):
            attention, grade, prob, _ = results[name][i]
            axes[row, col].imshow(overlay(samples[i].image, attention))
            axes[row, col].set_title(f"{name}: {GRADE_NAMES[grade]} ({prob:.2f})", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def lesion_mass_figure(path: Path, summary: dict) -> None:
    """Bars of attention mass on lesions per model, against a uniform map's (the lesions' area)."""
    names = [n for n in summary if n != "uniform_baseline"]
    baseline = summary["uniform_baseline"]
    means = [summary[n]["mean"] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.6))
    bars = ax.bar(names, means, color="tab:blue")
    for bar, mean in zip(bars, means, strict=True):
        ax.annotate(
            f"{mean:.1%} ({mean / baseline:.1f}x)",
            (bar.get_x() + bar.get_width() / 2, mean),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(baseline, color="k", linestyle="--", label=f"uniform map: {baseline:.1%} (lesion area)")
    ax.set_ylabel("attention mass inside lesions")
    ax.set_ylim(0, 1.3 * max(*means, baseline))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def explain_models(
    models: dict[str, BaseTask],
    records: list[Record],
    size: int,
    out: Path,
    sheet_rows: int = 6,
    batch_size: int = 16,
) -> dict:
    """Write overlays, explain.csv, comparison.png and lesion_mass.{json,png}; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    rows: list[list] = []
    for record in records:
        try:
            samples.append(load_sample(record, size))
        except ImageReadError as error:
            rows.extend([record.path, name, "", "", "", "", "", str(error)] for name in models)
    transform = EvalTransform()
    results: dict[str, list] = {name: [] for name in models}
    for name, task in models.items():
        task.eval()
        (out / name).mkdir(exist_ok=True)
        for start in tqdm(range(0, len(samples), batch_size), desc=f"explain {name}"):
            chunk = samples[start : start + batch_size]
            images = torch.stack([transform(s.image, 0) for s in chunk]).to(task.device)
            maps, probs, method = attention_maps(task, images)
            for sample, attention, p in zip(chunk, maps.cpu().numpy(), probs.cpu(), strict=True):
                grade, prob = int(p.argmax()), float(p.max())
                mass = None
                if sample.mask is not None and sample.mask.any():
                    mass = float(
                        lesion_mass_fraction(torch.tensor(attention)[None], torch.tensor(sample.mask)[None])
                    )
                results[name].append((attention, grade, prob, mass))
                save_overlay(
                    out / name / f"{sample.record.path.stem}.png",
                    sample,
                    attention,
                    name,
                    method,
                    grade,
                    prob,
                )
                true = "" if sample.record.grade == UNKNOWN else sample.record.grade
                rows.append(
                    [
                        sample.record.path,
                        name,
                        method,
                        true,
                        grade,
                        f"{prob:.4f}",
                        "" if mass is None else f"{mass:.4f}",
                        "",
                    ]
                )
    with (out / "explain.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["file", "model", "method", "true_grade", "pred_grade", "probability", "lesion_mass", "error"]
        )
        writer.writerows(rows)
    if samples:
        comparison_sheet(out / "comparison.png", samples, results, sheet_rows)
    with_lesions = [s.mask for s in samples if s.mask is not None and s.mask.any()]
    summary: dict = {}
    if with_lesions:
        for name, values in results.items():
            masses = [v[3] for v in values if v[3] is not None]
            summary[name] = {"mean": float(np.mean(masses)), "n": len(masses)}
        baseline = float(np.mean([(m > 0).mean() for m in with_lesions]))
        for name in results:
            summary[name]["lift_over_uniform"] = summary[name]["mean"] / baseline
        summary["uniform_baseline"] = baseline
        (out / "lesion_mass.json").write_text(json.dumps(summary, indent=2))
        lesion_mass_figure(out / "lesion_mass.png", summary)
    return summary


#: ``--compare`` entry meaning the model of the ``--config`` files itself.
CONFIGURED = "config"


def explain(argv: list[str]) -> None:
    """``drgrade explain``: attention overlays, comparison sheet and lesion-mass scores."""
    from drgrade.cli import configured

    parser = argparse.ArgumentParser(
        prog="drgrade explain",
        description=explain.__doc__,
        epilog="Other options (--config, --data.*, --model.*) are the same as for `drgrade test`.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlays and figures")
    parser.add_argument("--ckpt_path", help="checkpoint of the configured model (or last / best)")
    parser.add_argument(
        "--compare",
        nargs="+",
        help=f"checkpoints to explain side by side; {CONFIGURED!r} is the configured model "
        "(e.g. zero-shot, which has no checkpoint)",
    )
    parser.add_argument("--limit", type=int, help="explain at most this many images")
    parser.add_argument("--sheet_rows", type=int, default=6, help="images on the comparison sheet")
    opts, rest = parser.parse_known_args(argv)
    cli = configured(rest)
    datamodule, size = cli.datamodule, cli.datamodule.hparams.image_size
    entries = opts.compare or [opts.ckpt_path or CONFIGURED]
    tasks = [
        cli.model
        if entry == CONFIGURED
        else load_task(resolve_checkpoint(entry, cli.trainer.default_root_dir))
        for entry in entries
    ]
    if datamodule.hparams.predict_dir:
        records = folder_records(datamodule.hparams.predict_dir)
    else:
        datamodule.setup("test")
        records = datamodule.records_of("test")
    models: dict[str, BaseTask] = {}
    for entry, task in zip(entries, tasks, strict=True):
        if task.trainable and entry == CONFIGURED:
            raise SystemExit(f"drgrade: {type(task).__name__} needs --ckpt_path (a trained checkpoint)")
        if task.hparams.get("image_size") != size:
            raise SystemExit(
                f"drgrade: the model expects {task.hparams.get('image_size')} px images "
                f"but data.image_size is {size}; pass --data.image_size"
            )
        if isinstance(task, ZeroShotCLIP) and int(task.selected) < 0 and not datamodule.hparams.predict_dir:
            task.select_on(datamodule)
        name = COLUMN_NAMES.get(type(task).__name__, type(task).__name__)
        models[name if name not in models else f"{name}-{len(models)}"] = task
    summary = explain_models(models, records[: opts.limit], size, opts.out, opts.sheet_rows)
    for name, values in summary.items():
        if name != "uniform_baseline":
            print(
                f"{name}: {100 * values['mean']:.2f}% of attention inside lesions, "
                f"{values['lift_over_uniform']:.2f}x a uniform map ({values['n']} images)"
            )
    if summary:
        print(f"uniform map: {100 * summary['uniform_baseline']:.2f}% (the lesions' share of the image)")
    print(f"explanations written to {opts.out}/")
