"""Inputs that would cost gigabytes are judged before anything is allocated (peak memory measured)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np

from tests.integration.test_fail_safe import SANE, drgrade_metadata, fake_export


def run_measured(code: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh Python; (the JSON it prints last, its peak resident memory in GB).

    The peak is the process's own ``VmHWM`` (reset when it executes Python): ``getrusage``'s would
    include the forked test worker's memory from before the exec.
    """
    peak = "[line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0]"
    wrapped = code + f"\nprint({peak})\n"
    done = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 2), done.stderr[-2000:]
    *_, said, peak_kb = done.stdout.strip().splitlines()
    return json.loads(said), int(peak_kb) / 1e6


def test_a_one_pixel_strip_costs_no_memory_and_the_batch_keeps_its_other_rows(one_photograph, tmp_path):
    for width in (40_000, 100_000):
        strip = one_photograph / f"strip_{width}.png"
        _ok, encoded = cv2.imencode(".png", np.zeros((1, width, 3), np.uint8))
        strip.write_bytes(encoded.tobytes())
        assert strip.stat().st_size < 2_000
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    out = tmp_path / "p.csv"
    said, peak = run_measured(
        textwrap.dedent(f"""
        import csv, json
        from drgrade.serving.runner import main
        try:
            main([{str(model)!r}, {str(one_photograph)!r}, "--out", {str(out)!r}, "--workers", "0"])
        finally:
            rows = list(csv.DictReader(open({str(out)!r})))
            print(json.dumps({{r["file"].rsplit("/", 1)[-1]: [r["grade"], r["error"]] for r in rows}}))
        """)
    )
    assert peak < 1.5, f"peak resident memory {peak:.2f} GB"
    assert said["eye.png"][0] == "2"  # the good photograph beside them is graded
    for width in (40_000, 100_000):
        grade, error = said[f"strip_{width}.png"]
        assert grade == "" and error == f"ungradable: too small to grade ({width}x1)"


def test_an_elongated_image_is_refused_from_its_header(tmp_path):
    from drgrade.data.intake import take_in

    path = tmp_path / "banner.png"
    _ok, encoded = cv2.imencode(".png", np.zeros((300, 6000, 3), np.uint8))
    path.write_bytes(encoded.tobytes())
    crop, facts = take_in(path, 96)
    assert crop is None and facts.error.startswith("ungradable: not shaped like a photograph (6000x300")
