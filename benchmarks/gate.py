"""The quality gate's verdicts on folders of photographs: how many it grades, and why it refuses the rest.

    .venv/bin/python benchmarks/gate.py tests/data/real_photos /path/to/other/photographs

Each folder is read as ``predict`` reads it (``list_images``, one intake per file: decode at
reduced scale, the gate's measurements, ``judge``). Per folder it prints the photographs graded,
those called "not a fundus photograph", each other verdict with its count, and the median intake
time per photograph on this machine. Point it at real photographs from a camera the gate has not
seen to check it again; every refused file is listed with its reason.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

from drgrade.data.images import list_images
from drgrade.data.intake import judge, take_in


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of photographs")
    for folder in parser.parse_args(argv).folders:
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
