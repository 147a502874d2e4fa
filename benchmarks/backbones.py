"""CPU throughput of each backbone: FCN-CLIP on it, PyTorch and ONNX Runtime, float and INT8.

    .venv/bin/python benchmarks/backbones.py [--threads 2] [--batch 16] [--backbones RN50 ViT-B-16 flair]

Random weights (speed does not depend on their values); FLAIR's text tower is a tiny BERT
written to a temporary folder (the image side is what grading runs). Each figure is the median
of 3 timed batches after a warm-up. INT8 is static (calibrated on 16 synthetic photographs); an
INT8 model slower than float would be refused by ``drgrade export`` (said in the last column).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from drgrade.data.images import list_images
from drgrade.data.sources import LAYOUTS
from drgrade.serving.export import export_onnx
from drgrade.serving.quantize import model_rate, quantize_onnx
from drgrade.serving.runner import OnnxGrader
from drgrade.tasks import FCNCLIP


def tiny_text_model(folder: Path) -> Path:
    """A small BERT configuration and vocabulary, as a Hugging Face folder."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    words = [
        "a",
        "fundus",
        "photograph",
        "of",
        "no",
        "mild",
        "moderate",
        "severe",
        "proliferative",
        "diabetic",
        "retinopathy",
        "x",
        ".",
    ]
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n"
    )
    transformers.BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    ).save_pretrained(folder)
    return folder


def torch_rate(task: FCNCLIP, batch: torch.Tensor, repeats: int = 3) -> float:
    """Images/s of the PyTorch model (median of ``repeats`` after a warm-up)."""
    with torch.no_grad():
        task(batch)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            task(batch)
            rates.append(len(batch) / (time.perf_counter() - start))
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backbones", nargs="+", default=["RN50", "ViT-B-16", "flair"])
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    print(f"{'backbone':<10} {'size':>5} {'torch':>8} {'onnx':>8} {'int8':>8}  int8/float  (images/s)")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        root = LAYOUTS["aptos"].write_synthetic(work / "calibration", 16, 512, 0)
        calibration, _ = list_images(root / "train_images")
        for name in opts.backbones:
            size = 512 if name == "flair" else 224
            extra = {"text_encoder": str(tiny_text_model(work / "bert"))} if name == "flair" else {}
            task = FCNCLIP(name, None, size, **extra).eval()
            batch = torch.randn(opts.batch, 3, size, size)
            float_model = export_onnx(task, work / f"{name}.onnx", size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                int8_model = quantize_onnx(float_model, calibration, "synthetic", keep_slower=True)
            inputs = batch.numpy()
            onnx = model_rate(OnnxGrader(float_model, threads=opts.threads), inputs)
            int8 = model_rate(OnnxGrader(int8_model, threads=opts.threads), inputs)
            verdict = "" if int8 >= onnx else "  (slower: export would refuse it)"
            print(
                f"{name:<10} {size:>5} {torch_rate(task, batch):8.1f} {onnx:8.1f} {int8:8.1f}  "
                f"{int8 / onnx:9.2f}x{verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
