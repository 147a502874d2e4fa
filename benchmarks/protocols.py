"""CPU and wall time of each shipped protocol at demo size (``drgrade reproduce --protocol NAME``).

    .venv/bin/python benchmarks/protocols.py [--epochs 20] [--only few_shot ...]

Each protocol runs in a fresh process on the demo data (configs/demo.yaml: synthetic APTOS +
Messidor-2, 128 px, tiny random-weight CLIP); leave-one-source-out on the five synthetic layouts
(80 images each, 256 px). CPU time is the child process's user + system time; on a shared
machine the wall time also counts other processes' load.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS = ["aptos", "messidor2", "eyepacs", "idrid", "ddr"]


def timed(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process; its failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="trainer.max_epochs of the image models")
    parser.add_argument(
        "--only", nargs="+", default=["few_shot", "leave_one_source_out", "seeds_folds", "baselines"]
    )
    opts = parser.parse_args()
    drgrade = [sys.executable, "-m", "drgrade"]
    five = ROOT / "data" / "synthetic5"
    if "leave_one_source_out" in opts.only and not five.exists():
        subprocess.run(
            [
                *drgrade,
                "synth",
                "--out",
                str(five),
                "--layout",
                *LAYOUTS,
                "--num_images",
                "80",
                "--image_size",
                "256",
            ],
            cwd=ROOT,
            check=True,
        )
    print("| protocol | runs x models | CPU s | wall s |\n| --- | --- | --- | --- |")
    for name in opts.only:
        # the five layouts are read as real data: the demo's tiny random-weight CLIP named here
        tiny = ["--model.init_args.backbone", "RN-tiny", "--model.init_args.pretrained", "null"]
        data = (
            ["--data", str(five), *tiny, "--data.image_size", "128"]
            if name == "leave_one_source_out"
            else ["--demo"]
        )
        out = ROOT / "reports" / f"bench-{name}"
        command = [
            *drgrade,
            "reproduce",
            "--protocol",
            name,
            *data,
            "--out",
            str(out),
            "--trainer.max_epochs",
            str(opts.epochs),
        ]
        cpu, wall = timed(command)
        runs = (out / "runs.csv").read_text().count("\n") - 1
        print(f"| {name} | {runs} | {cpu:.0f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
