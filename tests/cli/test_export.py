import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from drgrade.cli import main
from drgrade.deploy import OnnxGrader
from drgrade.deploy import main as deploy_main
from drgrade.predictions import PROB_COLUMNS, ReferralRule
from drgrade.quantize import quantize_onnx
from drgrade.tasks import FCNCLIP, RankingCLIP, load_task
from tests.conftest import cli_args


@pytest.mark.parametrize(
    "make",
    [
        lambda: FCNCLIP("RN-tiny", None, 96, decoder_widths=(32, 16, 8)),
        lambda: RankingCLIP("RN-tiny", None, 96),
    ],
)
def test_onnx_probabilities_match_pytorch(make, tmp_path):
    from drgrade.export import export_onnx

    task = make().eval()
    task.thresholds.copy_(torch.tensor([0.5, 0.1, 0.2, 0.1, 0.1]))
    task.calibrated.fill_(True)
    task.temperature.fill_(2.5)  # applied in the graph, before the thresholds
    task.operating_cuts.copy_(torch.tensor([0.3, 0.6, float("nan"), 0.5]))
    task.uncertainty_cutoff.fill_(1.2)
    grader = OnnxGrader(export_onnx(task, tmp_path / "m.onnx", 96))
    assert grader.rule == task.referral_rule() == ReferralRule(pytest.approx(0.3), pytest.approx(1.2))
    images = torch.randn(7, 3, 96, 96)
    with torch.no_grad():
        expected = task.probabilities(task(images))
    probabilities, grades = grader.run(images.numpy())
    assert np.abs(probabilities - expected.numpy()).max() < 1e-4
    assert np.array_equal(grades, task.decide(expected).numpy())  # thresholds are in the graph
    metadata = grader.session.get_modelmeta().custom_metadata_map
    assert float(metadata["temperature"]) == 2.5
    assert [p["cut"] for p in json.loads(metadata["operating_points"])] == pytest.approx([0.3, 0.6, 0.5])


def test_export_and_deploy_cli(synthetic, tmp_path):
    main(cli_args("fit", "ranking", synthetic, tmp_path / "runs", "--trainer.max_epochs", "1"))
    main(
        [
            *cli_args("export", "ranking", synthetic, tmp_path / "runs"),
            "--ckpt_path",
            "best",
            "--out",
            str(tmp_path / "ranking.onnx"),
        ]
    )
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]
    for path in sources:
        shutil.copy(path, folder / path.name)
    (folder / "zz_corrupt.png").write_bytes(b"broken")
    deploy_main([str(tmp_path / "ranking.onnx"), str(folder), "--out", str(tmp_path / "p.csv")])
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 4 and "not a decodable image" in rows[-1]["error"]
    task = load_task(next((tmp_path / "runs").rglob("best-*.ckpt"))).eval()
    grader = OnnxGrader(tmp_path / "ranking.onnx")
    from drgrade.data.images import read_rgb

    batch = np.stack([grader.tensor(read_rgb(p)) for p in sorted(folder.glob("*"))[:3]])
    with torch.no_grad():
        expected = task.probabilities(task(torch.from_numpy(batch))).numpy()
    got = np.array([[float(r[column]) for column in PROB_COLUMNS] for r in rows[:3]])
    assert np.abs(got - expected).max() < 1e-4

    # INT8: same interface and metadata, a quarter of the size, close probabilities
    calibration = sorted((synthetic / "aptos2019" / "train_images").iterdir())[10:30]
    (tmp_path / "calibration").mkdir()
    for path in calibration:
        shutil.copy(path, tmp_path / "calibration" / path.name)
    int8 = quantize_onnx(tmp_path / "ranking.onnx", tmp_path / "calibration")
    assert (
        int8.name == "ranking.int8.onnx"
        and int8.stat().st_size < 0.5 * (tmp_path / "ranking.onnx").stat().st_size
    )
    quantised = OnnxGrader(int8)
    float_meta = grader.session.get_modelmeta().custom_metadata_map
    int8_meta = quantised.session.get_modelmeta().custom_metadata_map
    assert int8_meta.pop("quantization") == "int8-static" and int8_meta == float_meta
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "Softmax" in ops  # convolutions in INT8, the head in float
    deploy_main([str(int8), str(folder), "--out", str(tmp_path / "q.csv"), "--workers", "2"])
    quantised_rows = list(csv.DictReader((tmp_path / "q.csv").open()))
    assert [r["error"] != "" for r in quantised_rows] == [r["error"] != "" for r in rows]
    got_int8 = np.array([[float(r[column]) for column in PROB_COLUMNS] for r in quantised_rows[:3]])
    assert np.abs(got_int8 - expected).max() < 0.05


def test_deploy_needs_no_torch():
    code = "import sys, drgrade.deploy; assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
