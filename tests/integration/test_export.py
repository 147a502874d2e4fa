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
from drgrade.predictions import PROB_COLUMNS
from drgrade.serving.runner import OnnxGrader
from drgrade.serving.runner import main as deploy_main
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
    from drgrade.serving.export import export_onnx

    task = make().eval()
    rule = task.rule
    rule.thresholds.copy_(torch.tensor([0.5, 0.1, 0.2, 0.1, 0.1]))
    rule.thresholded.fill_(True)
    rule.temperature.fill_(2.5)  # applied in the graph, before the thresholds
    rule.operating_cuts.copy_(torch.tensor([0.3, 0.6, float("nan"), 0.5]))
    rule.uncertainty_cutoff.fill_(1.2)
    grader = OnnxGrader(export_onnx(task, tmp_path / "m.onnx", 96))
    images = torch.randn(7, 3, 96, 96)
    with torch.no_grad():
        expected = task.rule(task(images))
    got = grader.run(images.numpy())
    assert np.abs(got[0] - expected.probabilities.numpy()).max() < 1e-4
    for name, ours, theirs in zip(expected._fields[1:], expected[1:], got[1:], strict=True):
        if name == "uncertainty" or name == "p_referable":
            assert np.abs(theirs - ours.numpy()).max() < 1e-4, name
        else:  # thresholds, the referable cut and the uncertainty cut are in the graph
            assert np.array_equal(theirs, ours.numpy()), name
    described = json.loads(grader.session.get_modelmeta().custom_metadata_map["decision_rule"])
    assert described["temperature"] == 2.5 and grader.rule == described
    assert [p["cut"] for p in described["operating_points"]] == pytest.approx([0.3, 0.6, None, 0.5])


def test_export_and_deploy_cli(synthetic, tmp_path, capsys, monkeypatch):
    main(cli_args("fit", "ranking", synthetic, tmp_path / "runs", "--trainer.max_epochs", "1"))
    export = [
        *cli_args("export", "ranking", synthetic, tmp_path / "runs"),
        "--ckpt_path",
        "best",
        "--out",
        str(tmp_path / "ranking.onnx"),
        "--quantize",
        "int8",  # no calibration images: the configured training split calibrates
    ]
    # an INT8 model slower than float is refused (the tiny test network is: about 2x here), unless
    # kept on purpose; the measured speeds are fixed so the test does not depend on the machine
    monkeypatch.setattr("drgrade.serving.quantize.compared_speed", lambda *_: (100.0, 50.0))
    with pytest.raises(SystemExit) as stop:
        main(export)
    assert stop.value.code == 2 and "so it was not kept" in capsys.readouterr().err
    assert (tmp_path / "ranking.onnx").is_file() and not (tmp_path / "ranking.int8.onnx").exists()
    with pytest.warns(UserWarning, match="kept as asked"):
        main([*export, "--keep_slower_int8"])
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]
    for path in sources:
        shutil.copy(path, folder / path.name)
    (folder / "zz_corrupt.png").write_bytes(b"broken")
    deploy_main([str(tmp_path / "ranking.onnx"), str(folder), "--out", str(tmp_path / "p.csv")])
    rows = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert len(rows) == 4 and "not a decodable image" in rows[-1]["error"]
    assert all(r["action"] in ("refer", "no refer", "to grader") for r in rows)  # never empty
    assert (rows[-1]["action"], rows[-1]["refer_to_grader"]) == ("to grader", "1")
    exams = list(csv.DictReader((tmp_path / "exams.csv").read_text().splitlines()))  # beside --out
    assert len(exams) == 4 and exams[-1]["decision"] == "insufficient"  # each file its own patient
    task = load_task(next((tmp_path / "runs").rglob("best-*.ckpt"))).eval()
    grader = OnnxGrader(tmp_path / "ranking.onnx")
    from drgrade.data.images import read_rgb

    batch = np.stack([grader.tensor(read_rgb(p)) for p in sorted(folder.glob("*"))[:3]])
    with torch.no_grad():
        expected = task.rule(task(torch.from_numpy(batch))).probabilities.numpy()
    got = np.array([[float(r[column]) for column in PROB_COLUMNS] for r in rows[:3]])
    assert np.abs(got - expected).max() < 1e-4

    # INT8: same interface and metadata, a quarter of the size, close probabilities, not slower
    int8 = tmp_path / "ranking.int8.onnx"
    assert (
        int8.name == "ranking.int8.onnx"
        and int8.stat().st_size < 0.5 * (tmp_path / "ranking.onnx").stat().st_size
    )
    quantised = OnnxGrader(int8)
    float_meta = grader.session.get_modelmeta().custom_metadata_map
    int8_meta = quantised.session.get_modelmeta().custom_metadata_map
    quantization = int8_meta.pop("quantization")
    assert quantization == "int8-static, calibrated on 32 images: the configured training split"
    # the typicality check stays with the float model (INT8 noise would move photographs past its cut)
    assert json.loads(float_meta.pop("typicality"))["fitted"] and grader.cut is not None
    assert not json.loads(int8_meta.pop("typicality"))["fitted"] and quantised.cut is None
    assert int8_meta == float_meta

    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "Softmax" in ops  # convolutions in INT8, the head in float
    deploy_main([str(int8), str(folder), "--out", str(tmp_path / "q.csv"), "--workers", "2"])
    quantised_rows = list(csv.DictReader((tmp_path / "q.csv").read_text().splitlines()))
    assert [r["error"] != "" for r in quantised_rows] == [r["error"] != "" for r in rows]
    got_int8 = np.array([[float(r[column]) for column in PROB_COLUMNS] for r in quantised_rows[:3]])
    assert np.abs(got_int8 - expected).max() < 0.05


def test_deploy_needs_no_torch():
    code = "import sys, drgrade.deploy; assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
