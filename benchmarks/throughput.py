"""Throughput on this machine: loader images/s, zero-shot and training images/s.

Run: .venv/bin/python benchmarks/throughput.py [--data data/synthetic] [--repeats 3]
Each figure is the median of ``--repeats`` timed passes after one warm-up pass.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from pathlib import Path

import torch

from drgrade.data import DRDataModule, write_synthetic
from drgrade.tasks import FCNCLIP, RankingCLIP, ZeroShotCLIP


def median_rate(fn, images: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


def loader_rate(dm: DRDataModule, batches: int, repeats: int) -> float:
    def run():
        for _ in itertools.islice(dm.train_dataloader(), batches):
            pass

    return median_rate(run, batches * dm.hparams.batch_size, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args()
    root = Path(opts.data)
    if not (root / "aptos2019").exists():
        write_synthetic(root, 300, 100, image_size=1024, seed=0)
    dm = DRDataModule(
        str(root / "aptos2019"),
        str(root / "messidor2"),
        image_size=224,
        batch_size=32,
        num_workers=opts.workers,
        verify_images=False,
    )
    dm.setup("fit")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    print(
        f"loader (1024 px PNG sources -> 224 px, train augment, {opts.workers} workers): "
        f"{loader_rate(dm, 4, opts.repeats):.1f} images/s"
    )
    batch = torch.randn(32, 3, 224, 224)
    labels = torch.arange(32) % 5
    for name, task in [
        ("zero-shot RN50 (random weights), inference", ZeroShotCLIP("RN50", None, 224)),
        ("zero-shot RN-tiny, inference", ZeroShotCLIP("RN-tiny", None, 224)),
    ]:
        task.eval().selected.fill_(0)
        with torch.inference_mode():
            print(f"{name}: {median_rate(lambda t=task: t(batch), 32, opts.repeats):.1f} images/s")
    for name, task in [
        ("FCN-CLIP train step, frozen RN50", FCNCLIP("RN50", None, 224)),
        ("FCN-CLIP train step, fine-tuned RN-tiny", FCNCLIP("RN-tiny", None, 224, finetune_image=True)),
        ("ranking train step, frozen RN50", RankingCLIP("RN50", None, 224)),
        ("ranking train step, fine-tuned RN-tiny", RankingCLIP("RN-tiny", None, 224, finetune_image=True)),
    ]:
        task.train()
        optimizer = task.configure_optimizers()

        def step(t=task, o=optimizer):
            loss = t.criterion(t(batch), labels)
            o.zero_grad()
            loss.backward()
            o.step()

        print(f"{name}: {median_rate(step, 32, opts.repeats):.1f} images/s")


if __name__ == "__main__":
    main()
