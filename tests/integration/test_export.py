import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from drgrade.cli import main
from drgrade.decision.outputs import OUTPUT_NAMES
from drgrade.predictions import PROB_COLUMNS
from drgrade.serving.runner import OnnxGrader
from drgrade.serving.runner import main as deploy_main
from drgrade.tasks import FCNCLIP, EnsembleCLIP, RankingCLIP, ZeroShotCLIP, load_task
from tests.conftest import cli_args


def zero_shot_chosen() -> ZeroShotCLIP:
    """A tiny zero-shot model with its template set chosen (as ``drgrade fit`` would)."""
    task = ZeroShotCLIP("RN-tiny", None, 96, template_sets=["plain", "clinical"])
    task.selected.fill_(1)
    return task


def ensemble_of_two() -> EnsembleCLIP:
    """A tiny ensemble of FCN-CLIP and ranking, its members given in memory."""
    ensemble = EnsembleCLIP(["fcn.ckpt", "ranking.ckpt"], image_size=96)
    fcn, ranking = FCNCLIP("RN-tiny", None, 96, decoder_widths=(32, 16, 8)), RankingCLIP("RN-tiny", None, 96)
    ensemble.members.extend([fcn.eval(), ranking.eval()])
    return ensemble


@pytest.mark.parametrize(
    "make",
    [
        lambda: FCNCLIP("RN-tiny", None, 96, decoder_widths=(32, 16, 8)),
        lambda: RankingCLIP("RN-tiny", None, 96),
        zero_shot_chosen,
        ensemble_of_two,
    ],
)
def test_onnx_probabilities_match_pytorch(make, tmp_path):
    from drgrade.serving.export import export_onnx

    torch.manual_seed(0)
    task = make().eval()
    task.dme_cut.fill_(0.5)
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
        p_dme = torch.sigmoid(task.forward_with_dme(images)[1])
    got = grader.run(images.numpy())
    # every model's graph gives P(DME) after the rule's outputs, its cut in the metadata
    assert grader.outputs[len(OUTPUT_NAMES)] == "p_dme" and grader.dme_cut == 0.5
    assert np.abs(got[len(OUTPUT_NAMES)] - p_dme.numpy()).max() < 1e-5
    got = got[: len(OUTPUT_NAMES)]
    assert np.abs(got[0] - expected.probabilities.numpy()).max() < 1e-4
    for name, ours, theirs in zip(expected._fields[1:], expected[1:], got[1:], strict=True):
        if name == "uncertainty" or name == "p_referable":
            assert np.abs(theirs - ours.numpy()).max() < 1e-4, name
        else:  # thresholds, the referable cut and the uncertainty cut are in the graph
            assert np.array_equal(theirs, ours.numpy()), name
    described = json.loads(grader.session.get_modelmeta().custom_metadata_map["decision_rule"])
    assert described["temperature"] == 2.5 and grader.rule == described
    assert [p["cut"] for p in described["operating_points"]] == pytest.approx([0.3, 0.6, None, 0.5])


@pytest.fixture(scope="module")
def exported(synthetic, tmp_path_factory) -> SimpleNamespace:
    """A 1-epoch ranking checkpoint exported as float and INT8, a folder of three photographs and a
    broken file, and deploy's rows for the float graph: what the export tests below read.

    The INT8 export is first refused as slower than float (the measured speeds are fixed, so the
    refusal does not depend on the machine), then kept on purpose: ``refused`` holds the message.
    """
    root = tmp_path_factory.mktemp("export")
    main(cli_args("fit", "ranking", synthetic, root / "runs", "--trainer.max_epochs", "1"))
    export = [
        *cli_args("export", "ranking", synthetic, root / "runs"),
        *("--ckpt_path", "best", "--out", str(root / "ranking.onnx")),
        *("--quantize", "int8"),  # no calibration images: the configured training split calibrates
    ]
    refused = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(refused):
        patch.setattr("drgrade.serving.quantize.compared_speed", lambda *_: (100.0, 50.0))
        with pytest.raises(SystemExit) as stop:
            main(export)
        kept_before = (root / "ranking.onnx").is_file(), (root / "ranking.int8.onnx").exists()
        with pytest.warns(UserWarning, match="kept as asked"):
            main([*export, "--keep_slower_int8"])
    folder = root / "images"
    folder.mkdir()
    for path in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "zz_corrupt.png").write_bytes(b"broken")
    deploy_main([str(root / "ranking.onnx"), str(folder), "--out", str(root / "p.csv")])
    return SimpleNamespace(
        root=root,
        folder=folder,
        refusal=(stop.value.code, refused.getvalue(), kept_before),
        rows=list(csv.DictReader((root / "p.csv").read_text().splitlines())),
        float_graph=root / "ranking.onnx",
        int8_graph=root / "ranking.int8.onnx",
    )


def test_an_int8_model_slower_than_float_is_refused_unless_kept_on_purpose(exported):
    code, said, (float_written, int8_written) = exported.refusal
    assert code == 2 and "so it was not kept" in said
    assert float_written and not int8_written  # the float model stays; no slower INT8 beside it
    assert exported.int8_graph.is_file()  # --keep_slower_int8 keeps it


def test_deploy_gives_every_file_an_action_and_writes_exams_beside_its_output(exported):
    rows = exported.rows
    assert len(rows) == 4 and "not a decodable image" in rows[-1]["error"]
    assert all(r["action"] in ("refer", "no refer", "to grader") for r in rows)  # never empty
    assert (rows[-1]["action"], rows[-1]["refer_to_grader"]) == ("to grader", "1")
    exams = list(csv.DictReader((exported.root / "p.exams.csv").read_text().splitlines()))  # beside p.csv
    assert len(exams) == 4 and exams[-1]["decision"] == "insufficient"  # each file its own patient


def float_expected(exported) -> np.ndarray:
    """The checkpoint's own probabilities for the three photographs, on the runner's preprocessing."""
    from drgrade.data.images import read_rgb

    task = load_task(next((exported.root / "runs").rglob("best-*.ckpt"))).eval()
    grader = OnnxGrader(exported.float_graph)
    batch = np.stack([grader.tensor(read_rgb(p)) for p in sorted(exported.folder.glob("*"))[:3]])
    with torch.no_grad():
        return task.rule(task(torch.from_numpy(batch))).probabilities.numpy()


def test_deploy_of_the_float_graph_equals_its_checkpoint(exported):
    got = np.array([[float(r[column]) for column in PROB_COLUMNS] for r in exported.rows[:3]])
    assert np.abs(got - float_expected(exported)).max() < 1e-4


def test_int8_keeps_the_interface_and_metadata_but_not_the_typicality_check(exported):
    """A quarter of the size; the typicality check stays with the float model (INT8 noise would
    move photographs past its cut); convolutions in INT8, the head in float."""
    assert exported.int8_graph.stat().st_size < 0.5 * exported.float_graph.stat().st_size
    grader, quantised = OnnxGrader(exported.float_graph), OnnxGrader(exported.int8_graph)
    float_meta = grader.session.get_modelmeta().custom_metadata_map
    int8_meta = quantised.session.get_modelmeta().custom_metadata_map
    quantization = int8_meta.pop("quantization")
    assert quantization == "int8-static, calibrated on 32 images: the configured training split"
    assert json.loads(float_meta.pop("typicality"))["fitted"] and grader.cut is not None
    assert not json.loads(int8_meta.pop("typicality"))["fitted"] and quantised.cut is None
    assert int8_meta == float_meta
    graph = onnx.load(str(exported.int8_graph)).graph
    ops = {node.op_type for node in graph.node}
    assert "QuantizeLinear" in ops and "Softmax" in ops
    from drgrade.serving.quantize import drop_distance_branch

    graded = onnx.load(str(exported.float_graph))
    assert drop_distance_branch(graded)  # what is calibrated: the check's constants went with it
    used = {name for node in graded.graph.node for name in node.input}
    assert [i.name for i in graded.graph.initializer if i.name not in used] == []


def test_deploy_of_the_int8_graph_is_close_to_float(exported):
    float_exams = (exported.root / "p.exams.csv").read_bytes()
    out = exported.root / "q.csv"  # the float run's folder: each prediction file has its own exams
    deploy_main([str(exported.int8_graph), str(exported.folder), "--out", str(out), "--workers", "2"])
    assert (exported.root / "q.exams.csv").is_file() and (
        exported.root / "p.exams.csv"
    ).read_bytes() == float_exams
    quantised_rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["error"] != "" for r in quantised_rows] == [r["error"] != "" for r in exported.rows]
    got = np.array([[float(r[column]) for column in PROB_COLUMNS] for r in quantised_rows[:3]])
    assert np.abs(got - float_expected(exported)).max() < 0.05


def test_deploy_needs_no_torch():
    code = "import sys, drgrade.deploy; assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
