"""Every export has its model card: beside the ONNX file, in its metadata, and shown by ``serve --onnx``."""

import json
import shutil

import onnx
import pytest

from drgrade.cli import main
from drgrade.commands.serve import onnx_card_summary
from drgrade.serving.runner import OnnxGrader
from tests.conftest import cli_args


def test_export_writes_the_card_from_the_checkpoints_own_evaluation(
    synthetic, zero_shot_checkpoint, tmp_path
):
    runs = tmp_path / "runs"
    checkpoint = runs / "version_0" / "checkpoints" / zero_shot_checkpoint.name
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(zero_shot_checkpoint, checkpoint)

    def export(name):
        out = tmp_path / name
        main(
            [
                *cli_args("export", "zero_shot", synthetic, runs),
                "--ckpt_path",
                str(checkpoint),
                "--out",
                str(out),
            ]
        )
        return out, (tmp_path / name.replace(".onnx", ".card.md")).read_text()

    _, untested = export("before.onnx")
    assert "not a medical device" in untested and "never evaluated" in untested
    # never tested, the card still says what the checkpoint records it was fitted on
    assert "- aptos2019 (SYNTHETIC), messidor2 (SYNTHETIC): the sources it was fitted on" in untested
    assert "trained on SYNTHETIC photographs (aptos2019, messidor2)" in untested

    main(cli_args("test", "zero_shot", synthetic, runs, "--ckpt_path", str(checkpoint)))
    metrics = json.loads(next(runs.glob("version_*/metrics.json")).read_text())
    model, card = export("model.onnx")
    props = onnx.load(str(model), load_external_data=False).metadata_props
    assert [p.key for p in props].count("model_card") == 1  # one card, one writer
    stored = {p.key: p.value for p in props}
    facts = json.loads(stored["model_card"])
    # the same facts in the metadata as in the Markdown, read from the run, not recomputed
    assert facts["medical_device"].startswith("Research software, not a medical device")
    assert facts["checkpoint"] == metrics["provenance"]["checkpoint"] and "sha256:" in facts["checkpoint"]
    assert facts["weights"] == {"backbone": "RN-tiny", "weights": "random", "sha256": None, "pretraining": []}
    assert facts["data_source"] == metrics["provenance"]["data"]["sources"]
    assert facts["data_source"]["aptos2019"]["synthetic"] is True
    qwk = facts["evaluation"]["figures"]["qwk"]
    assert qwk == {"value": metrics["metrics"]["qwk"], "interval": metrics["confidence_intervals"]["qwk"]}
    assert (
        facts["evaluation"]["split"] == "test"
        and facts["evaluation"]["images"] == metrics["metrics"]["num_images"]
    )
    assert facts["decision_rule"] == metrics["decision_rule"]
    assert any("SYNTHETIC" in text for text in facts["limitations"])
    assert any(text.startswith("never trained or tested on eyepacs") for text in facts["limitations"])
    for section in ("## Model details", "## Intended use", "## Training data", "## Decision rule"):
        assert section in card
    assert "| aptos2019 | yes |" in card and "quadratic weighted kappa" in card
    low, high = metrics["confidence_intervals"]["referable_sensitivity"]
    assert f"{low:.3f} to {high:.3f}" in card
    # DME is a reported figure: the test's own section, the validation cut the graph's metadata holds
    dme = metrics["dme"]
    assert facts["evaluation"]["dme"] == dme and dme["labelled_images"] > 0
    assert facts["dme_cut"] == json.loads(stored["dme_cut"]) == dme["operating_point"]["threshold"]
    assert "p_dme" in facts["network_data_format"]["outputs"]
    assert f"- DME: P(DME) at or over {facts['dme_cut']:.4g} (fitted on validation)" in card
    assert f"DME, on the {dme['labelled_images']} images graded for it ({dme['positives']} with DME)" in card
    sensitivity = dme["operating_point"]["sensitivity_ci"]
    assert f"DME sensitivity at the validation cut {facts['dme_cut']:.3f}" in card
    assert f"(Wilson 95% {sensitivity[0]:.3f} to {sensitivity[1]:.3f})" in card
    summary = onnx_card_summary(OnnxGrader(model).card)
    assert (
        "not a medical device" in summary
        and f"quadratic weighted kappa {metrics['metrics']['qwk']:.3f}" in summary
    )


@pytest.mark.parametrize("card", [None, {"name": "x"}])
def test_serve_says_when_a_model_has_no_readable_card(card):
    assert "use with care" in onnx_card_summary(card)
