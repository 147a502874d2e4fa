"""drgrade benchmarks: loader, training, prediction, ONNX, memory, Lightning overhead, bootstrap.

    .venv/bin/python benchmarks/bench.py                    # CPU, the README table's figures
    python benchmarks/bench.py --device cuda --precision bf16-mixed --only train predict

Every figure is the median of --repeats timed runs after a warm-up. Synthetic 2000-pixel
PNG sources stand in for real APTOS photographs (which reach ~3200x2100).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch

from drgrade.data import DRDataModule, write_synthetic
from drgrade.tasks import FCNCLIP, RankingCLIP, ZeroShotCLIP

SECTIONS = ("loader", "train", "overhead", "predict", "onnx", "bootstrap")


def median(fn: Callable[[], float], repeats: int) -> float:
    """Median of ``repeats`` calls of ``fn`` (each returns images/s), after one warm-up call."""
    fn()
    return statistics.median(fn() for _ in range(repeats))


def datamodule(root: Path, size: int, cache_dir: Path | None, workers: int, batch: int) -> DRDataModule:
    dm = DRDataModule(
        roots={"aptos2019": str(root / "aptos2019"), "messidor2": str(root / "messidor2")},
        image_size=size,
        batch_size=batch,
        num_workers=workers,
        verify_images=False,
        cache=cache_dir is not None,
        cache_dir=str(cache_dir) if cache_dir else None,
    )
    dm.setup("fit")
    return dm


def loader_rate(dm: DRDataModule) -> float:
    start, count = time.perf_counter(), 0
    for batch in dm.train_dataloader():
        count += len(batch["label"])
    return count / (time.perf_counter() - start)


class StepTimer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.images = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.images += len(batch["label"])
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.end = time.perf_counter()


def lightning_rate(make: Callable, dm: DRDataModule, steps: int, device: str, precision: str) -> float:
    timer = StepTimer(warmup=2)
    trainer = L.Trainer(
        max_steps=steps + 2,
        accelerator=device,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(make(), dm)
    return timer.images / (timer.end - timer.start)


def plain_rate(make: Callable, dm: DRDataModule, steps: int, device: str) -> float:
    """The same model, loss, optimiser and batches in a hand-written PyTorch loop."""
    task = make().to(device)
    task.train()
    optimizer = task.configure_optimizers()
    batches = iter(dm.train_dataloader())
    images, start = 0, 0.0
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        batch = next(batches)
        loss = task.criterion(task(batch["image"].to(device)), batch["label"].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(batch["label"]) if step >= 2 else 0
    if device == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def predict_rate(task, size: int, device: str, bf16: bool, batch: int) -> Callable[[], float]:
    task = task.to(device).eval()
    images = torch.randn(batch, 3, size, size, device=device)

    def run() -> float:
        autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
        start = time.perf_counter()
        with torch.inference_mode(), autocast:
            for _ in range(3):
                task.probabilities(task(images))
        if device == "cuda":
            torch.cuda.synchronize()
        return 3 * batch / (time.perf_counter() - start)

    return run


def onnx_section(models: dict, opts, report, folder: Path) -> None:
    from drgrade.serving.export import export_onnx
    from drgrade.serving.runner import OnnxGrader

    for name in ("FCN-CLIP", "ranking"):
        task = models[name]().eval()
        torch_rate = median(predict_rate(task, 224, "cpu", False, opts.batch), opts.repeats)
        report(f"predict {name} {opts.backbone}, PyTorch CPU", torch_rate)
        grader = OnnxGrader(export_onnx(task, folder / "m.onnx", 224))
        batch = torch.randn(opts.batch, 3, 224, 224)
        with torch.no_grad():
            expected = task.probabilities(task(batch))
        gap = (torch.from_numpy(grader.run(batch.numpy())[0]) - expected).abs().max()

        array = batch.numpy()

        def onnx_run(g=grader, b=array) -> float:
            start = time.perf_counter()
            for _ in range(3):
                g.run(b)
            return 3 * len(b) / (time.perf_counter() - start)

        report(f"predict {name} {opts.backbone}, ONNX Runtime CPU", median(onnx_run, opts.repeats))
        report(f"ONNX vs PyTorch max |p difference| ({name})", float(gap), "")


def bootstrap_section(opts, report) -> None:
    """2,000 patient-level resamples of every Table 3 metric on a 1,000-image split."""
    import numpy as np

    from drgrade.evaluation.bootstrap import BootstrapSpec, confidence_intervals
    from drgrade.evaluation.clinical import softmax

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, 1000)
    probs = softmax(rng.normal(size=(1000, 5)) + 2 * np.eye(5)[targets])
    patients = [str(i // 2) for i in range(1000)]

    def timed() -> float:
        start = time.perf_counter()
        confidence_intervals(probs, targets, probs.argmax(1), patients, BootstrapSpec(2000))
        return time.perf_counter() - start

    report("bootstrap intervals, 2,000 resamples x 1,000 images", median(timed, opts.repeats), "s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/bench"), help="synthetic 2000 px sources")
    parser.add_argument("--images", type=int, default=96, help="source images to generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    parser.add_argument("--backbone", default="RN50", help="RN50 (random weights: speed is the same)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    opts = parser.parse_args()
    if not (opts.data / "aptos2019").exists():
        write_synthetic(opts.data, opts.images * 3 // 4, opts.images // 4, image_size=2000, seed=0)
    results: dict[str, float] = {}
    gpu = torch.cuda.get_device_name() if opts.device == "cuda" else None
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, device {gpu or 'cpu'}, "
        f"torch {torch.__version__}, precision {opts.precision}"
    )
    bf16 = opts.precision.startswith("bf16")
    dev, prec = opts.device, opts.precision

    def report(name: str, value: float, unit: str = "images/s") -> None:
        results[name] = round(value, 6 if not unit else 2)
        print(f"  {name:<58} {value:10.4g} {unit}", flush=True)

    models = {
        "zero-shot": lambda: ZeroShotCLIP(opts.backbone, None, 224, template_sets=["clinical"]),
        "FCN-CLIP": lambda: FCNCLIP(opts.backbone, None, 224),
        "ranking": lambda: RankingCLIP(opts.backbone, None, 224),
    }
    with tempfile.TemporaryDirectory() as cache:
        cached = datamodule(opts.data, 224, Path(cache), opts.workers, opts.batch)
        if "loader" in opts.only:
            raw = datamodule(opts.data, 224, None, opts.workers, opts.batch)
            report("loader, 2000 px PNG -> 224, raw decode", median(lambda: loader_rate(raw), opts.repeats))
            report(
                "loader, 2000 px PNG -> 224, from cache", median(lambda: loader_rate(cached), opts.repeats)
            )
        else:
            loader_rate(cached)  # fill the cache so training is not loader-bound on first use
        if "train" in opts.only:
            for name, make in (("fit FCN-CLIP", models["FCN-CLIP"]), ("fit ranking", models["ranking"])):
                rate = median(lambda m=make: lightning_rate(m, cached, opts.steps, dev, prec), opts.repeats)
                report(f"{name} (frozen {opts.backbone}), 224 px, {prec}", rate)
        if "overhead" in opts.only:

            def tiny():
                return FCNCLIP("RN-tiny", None, 224, finetune_image=True)

            lit = median(lambda: lightning_rate(tiny, cached, opts.steps * 2, dev, "32-true"), opts.repeats)
            plain = median(lambda: plain_rate(tiny, cached, opts.steps * 2, dev), opts.repeats)
            report("Lightning fit, FCN-CLIP RN-tiny fine-tuned", lit)
            report("plain PyTorch loop, same model/data", plain)
            report("Lightning overhead", 100 * (plain / lit - 1), "%")
        if "predict" in opts.only:
            for name, make in models.items():
                task = make()
                if isinstance(task, ZeroShotCLIP):
                    task.selected.fill_(0)
                rate = median(predict_rate(task, 224, dev, bf16, opts.batch), opts.repeats)
                report(f"predict {name} {opts.backbone}, {'bf16' if bf16 else 'fp32'}", rate)
        if "onnx" in opts.only and dev == "cpu":
            onnx_section(models, opts, report, Path(cache))
    if "bootstrap" in opts.only:
        bootstrap_section(opts, report)
    report("peak resident memory", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    if dev == "cuda":
        report("peak GPU memory", torch.cuda.max_memory_allocated() / 2**20, "MiB")
    if opts.json:
        opts.json.write_text(json.dumps({"device": gpu or "cpu", "precision": prec, **results}, indent=2))


if __name__ == "__main__":
    main()
