"""``drgrade predict`` of a labelled split: the true DME beside the true grade, and zero-shot's P(DME)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from drgrade.cli import main
from drgrade.tasks import load_task
from tests.conftest import cli_args


def test_predict_fills_true_dme_where_the_source_grades_it_and_zero_shot_gives_p_dme(
    synthetic, zero_shot_checkpoint, tmp_path
):
    # the zero-shot fit chose its template set and fitted its DME cut on validation
    fitted = json.loads((zero_shot_checkpoint.parent.parent / "metrics.json").read_text())
    assert fitted["stage"] == "val" and fitted["dme"]["labelled_images"] > 0

    main(cli_args("predict", "zero_shot", synthetic, tmp_path, "--ckpt_path", str(zero_shot_checkpoint)))
    rows = list(csv.DictReader(next(tmp_path.rglob("predictions.csv")).open(newline="")))
    sheet = csv.DictReader((synthetic / "messidor2" / "messidor_data.csv").open(newline=""))
    adjudicated = {row["image_id"].lower(): row["adjudicated_dme"] for row in sheet}
    messidor = [r for r in rows if r["source"] == "messidor2"]
    assert messidor and {r["true_dme"] for r in messidor} == {"0", "1"}
    assert all(r["true_dme"] == adjudicated[Path(r["file"]).name.lower()] for r in messidor)
    assert all(r["true_dme"] == "" for r in rows if r["source"] == "aptos2019")  # APTOS grades no DME

    cut = load_task(zero_shot_checkpoint).dme_cut_value()
    assert cut == fitted["dme"]["operating_point"]["threshold"]
    graded = [r for r in rows if not r["error"]]
    assert graded and all(0 <= float(r["p_dme"]) <= 1 for r in graded)
    assert all(
        r["dme"] == str(int(float(r["p_dme"]) >= cut)) for r in graded if abs(float(r["p_dme"]) - cut) > 1e-6
    )
