"""The quality gate's verdicts on folders of photographs: how many it grades, and why it refuses the rest.

    .venv/bin/python benchmarks/gate.py tests/data/real_photos /path/to/other/photographs
    .venv/bin/python benchmarks/gate.py --cost tests/data/real_photos

Each folder is read as ``predict`` reads it (``list_images``, one intake per file: decode at
reduced scale, the gate's measurements, ``judge``). Per folder it prints the photographs graded,
those called "not a fundus photograph", each other verdict with its count, and the median intake
time per photograph on this machine. Point it at real photographs from a camera the gate has not
seen to check it again; every refused file is listed with its reason.

``--cost`` prints what the gate adds to the intake instead: the CPU time (all threads) of the
intake without the gate (read, reduced-scale decode, network crop) and with it (``take_in``),
per photograph, median of three runs each, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

from drgrade.data.images import decode, list_images, read_bytes, read_header
from drgrade.data.intake import decode_target, judge, take_in
from drgrade.data.preprocess import preprocess_fundus


def survey(folder: Path, size: int = 224) -> tuple[Counter, list[tuple[str, str]], float]:
    """(verdict counts, refused files with their reasons, median intake seconds) for ``folder``."""
    counts: Counter = Counter()
    refused, seconds = [], []
    for path in list_images(folder)[0]:
        start = time.perf_counter()
        reason = judge(take_in(path, size, hashes=False)[1])
        seconds.append(time.perf_counter() - start)
        counts[reason.removeprefix("ungradable: ").split(" (")[0] if reason else "graded"] += 1
        if reason:
            refused.append((path.name, reason))
    return counts, refused, statistics.median(seconds) if seconds else 0.0


def without_gate(path: Path, size: int = 224) -> None:
    """The intake's work but the gate's: read, header, reduced-scale decode, network crop."""
    data = read_bytes(path)
    header = read_header(data, path)
    preprocess_fundus(decode(data, path, decode_target(size), header=header), size)


def core_ms(fn, path: Path, repeats: int = 3) -> float:
    """Median CPU milliseconds (every thread of this process) of ``fn(path)``."""
    spent = []
    for _ in range(repeats):
        start = time.process_time()
        fn(path)
        spent.append(time.process_time() - start)
    return 1000 * statistics.median(spent)


def cost(folder: Path) -> None:
    """Print the intake's CPU time per photograph of ``folder`` without and with the gate."""
    paths = list_images(folder)[0]
    plain = statistics.mean(core_ms(without_gate, p) for p in paths)
    gated = statistics.mean(core_ms(lambda p: take_in(p, 224, hashes=False), p) for p in paths)
    print(
        f"{folder}: {len(paths)} photographs; intake without the gate {plain:.1f} core-ms, "
        f"with it {gated:.1f} core-ms per photograph ({gated / plain:.2f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of photographs")
    parser.add_argument("--cost", action="store_true", help="the gate's share of the intake's time instead")
    opts = parser.parse_args(argv)
    for folder in opts.folders:
        if opts.cost:
            cost(folder)
            continue
        counts, refused, median = survey(folder)
        total = sum(counts.values())
        not_fundus = sum(n for verdict, n in counts.items() if verdict.startswith("not a fundus"))
        print(f"{folder}: {total} photographs, {counts['graded']} graded, {not_fundus} called not a fundus")
        print(f"  median intake {median * 1000:.0f} ms per photograph")
        for verdict, n in counts.most_common():
            if verdict != "graded":
                print(f"  {n} x {verdict}")
        for name, reason in refused:
            print(f"    {name}: {reason}")


if __name__ == "__main__":
    main()
