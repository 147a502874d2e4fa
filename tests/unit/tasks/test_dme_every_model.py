"""DME on every model: zero-shot's prompt pair, ranking's learnt DME prompts, the ensemble's mean P(DME)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from drgrade.grades import DME_STATES, TEMPLATE_SETS, dme_prompts
from drgrade.models.losses import masked_dme_loss
from drgrade.tasks import FCNCLIP, EnsembleCLIP, RankingCLIP, ZeroShotCLIP, load_task

SIZE = 64


def images(count: int = 4) -> torch.Tensor:
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def test_dme_prompts_come_from_the_one_prompt_source():
    absent, present = DME_STATES
    assert dme_prompts(present, "clinical") == [
        t.format("diabetic macular edema") for t in TEMPLATE_SETS["clinical"]
    ]
    assert dme_prompts(absent, "lesions") == [
        t.format("a macula free of exudates") for t in TEMPLATE_SETS["lesions"]
    ]
    flair = dme_prompts(present, "flair")  # FLAIR's caption around its own macular definitions
    assert flair[0] == "A fundus photograph of many exudates near the macula"
    assert flair[-1] == "A fundus photograph of diabetic macular edema"


def test_zero_shot_p_dme_is_the_softmax_over_the_two_dme_prompts():
    torch.manual_seed(0)
    task = ZeroShotCLIP("RN-tiny", None, SIZE, template_sets=["plain", "clinical"]).eval()
    task.selected.fill_(1)  # "clinical", as if chosen on validation
    batch = images()
    with torch.no_grad():
        logits, dme = task.forward_with_dme(batch)
        backbone = task.backbone
        pair = backbone.zero_shot_classifier([dme_prompts(s, "clinical") for s in DME_STATES])  # [D, 2]
        image = backbone.encode_image(batch, normalize=True)
        expected = (backbone.logit_scale * image @ pair).softmax(-1)[:, 1]
    assert torch.allclose(torch.sigmoid(dme), expected, atol=1e-5)
    assert torch.allclose(logits, task(batch), atol=1e-5)  # the grade logits are unchanged
    assert task.has_dme and math.isnan(float(task.dme_cut))  # fitted on validation, like the rule


def test_ranking_learns_its_own_dme_prompts_through_the_text_tower_from_labelled_images_only():
    torch.manual_seed(0)
    task = RankingCLIP("RN-tiny", None, SIZE)
    batch = images()
    _, dme = task.forward_with_dme(batch)
    with torch.no_grad():  # P(DME): softmax over the learnt pair's cosine logits / temperature
        text = task.dme_prompts(task.backbone)
        image = F.normalize(task.backbone.encode_image(batch, normalize=False), dim=-1)
        expected = (image @ text.T / task.hparams.logit_temperature).softmax(-1)[:, 1]
    assert torch.allclose(torch.sigmoid(dme), expected, atol=1e-5)
    assert task.dme_weight == 1.0 and task.dme_prompts.ctx.requires_grad

    masked_dme_loss(dme, torch.tensor([-1, -1, -1, -1])).backward()  # no DME label: nothing learnt
    assert task.dme_prompts.ctx.grad is None or task.dme_prompts.ctx.grad.abs().sum() == 0
    task.zero_grad()
    _, dme = task.forward_with_dme(batch)
    masked_dme_loss(dme, torch.tensor([1, 0, -1, -1])).backward()
    assert task.dme_prompts.ctx.grad.abs().sum() > 0 and task.dme_prompts.rank.grad.abs().sum() > 0
    assert task.prompts.ctx.grad is None  # the grade prompts are not moved by the DME loss
    assert "dme_prompts.ctx" in task.state_dict() and "dme_cut" in task.state_dict()


def test_the_ensemble_averages_its_members_p_dme_where_they_have_it():
    torch.manual_seed(0)
    ensemble = EnsembleCLIP(["a.ckpt", "b.ckpt", "c.ckpt"], weights=[1.0, 2.0, 1.0], image_size=SIZE)
    logit = torch.logit(torch.tensor([0.8, 0.3]))
    mean = torch.sigmoid(ensemble.mean_dme([logit, None, torch.logit(torch.tensor([0.2, 0.5]))]))
    assert torch.allclose(mean, torch.tensor([0.5, 0.4]), atol=1e-6)  # weights 1 and 1 of those with DME
    assert ensemble.mean_dme([None, None, None]) is None

    members = [FCNCLIP("RN-tiny", None, SIZE, decoder_widths=(16, 8, 8)), RankingCLIP("RN-tiny", None, SIZE)]
    pair = EnsembleCLIP(["a.ckpt", "b.ckpt"], weights=[3.0, 1.0], image_size=SIZE)
    assert not pair.has_dme  # no member loaded yet
    pair.members.extend(m.eval() for m in members)
    pair.eval()
    batch = images()
    with torch.no_grad():
        logits, dme = pair.forward_with_dme(batch)
        each = [torch.sigmoid(m.forward_with_dme(batch)[1]) for m in members]
    assert pair.has_dme
    assert torch.allclose(torch.sigmoid(dme), 0.75 * each[0] + 0.25 * each[1], atol=1e-6)
    assert torch.allclose(logits, pair(batch), atol=1e-6)


@pytest.mark.parametrize("weight", ["-1", "nan"])
def test_a_negative_dme_weight_is_refused_for_ranking(weight):
    from drgrade.errors import OptionError

    with pytest.raises(OptionError, match="dme_weight must be >= 0"):
        RankingCLIP("RN-tiny", None, SIZE, dme_weight=float(weight))


def check_predict_dme(run_root: Path, synthetic: Path, checkpoint: Path) -> None:
    """``drgrade predict`` of the test split with the zero-shot checkpoint: true DME, P(DME), the flag.

    Called by tests/cli/test_cli.py's zero-shot predict (one run serves both). The true DME is
    filled where the source grades it (Messidor-2's ``adjudicated_dme``), as the true grade is,
    so the file can be scored; zero-shot's P(DME) and its validation cut reach every graded row.
    """
    fitted = json.loads((checkpoint.parent.parent / "metrics.json").read_text())
    assert fitted["stage"] == "val" and fitted["dme"]["labelled_images"] > 0  # the cut fitted on validation
    rows = list(csv.DictReader(next(run_root.rglob("predictions.csv")).open(newline="")))
    sheet = csv.DictReader((synthetic / "messidor2" / "messidor_data.csv").open(newline=""))
    adjudicated = {row["image_id"].lower(): row["adjudicated_dme"] for row in sheet}
    messidor = [r for r in rows if r["source"] == "messidor2"]
    assert messidor and {r["true_dme"] for r in messidor} == {"0", "1"}
    assert all(r["true_dme"] == adjudicated[Path(r["file"]).name.lower()] for r in messidor)
    assert all(r["true_dme"] == "" for r in rows if r["source"] == "aptos2019")  # APTOS grades no DME

    cut = load_task(checkpoint).dme_cut_value()
    assert cut == fitted["dme"]["operating_point"]["threshold"]
    graded = [r for r in rows if not r["error"]]
    assert graded and all(0 <= float(r["p_dme"]) <= 1 for r in graded)
    away = [r for r in graded if abs(float(r["p_dme"]) - cut) > 1e-6]
    assert all(r["dme"] == str(int(float(r["p_dme"]) >= cut)) for r in away)


def test_a_checkpoint_saved_before_dme_outputs_is_refused_saying_to_fit_again(zero_shot_checkpoint, tmp_path):
    from drgrade.errors import CheckpointError

    state = torch.load(zero_shot_checkpoint, map_location="cpu", weights_only=True)
    for key in ("dme_classifiers", "dme_cut"):
        del state["state_dict"][key]
    torch.save(state, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="saved before this model had a DME output: fit it again"):
        load_task(tmp_path / "old.ckpt")
