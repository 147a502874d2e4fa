"""The page shows P(DME) beside its cut for every model, zero-shot included (not only FCN-CLIP)."""

from __future__ import annotations

from drgrade.serving.app import cards
from drgrade.serving.model_card import card_of_task
from drgrade.serving.screening import screen_files
from drgrade.tasks import load_task
from tests.conftest import with_typicality_cut


def test_a_zero_shot_card_shows_p_dme_beside_the_validation_dme_cut(
    zero_shot_checkpoint, one_photograph, tmp_path
):
    # the typicality check is off: what is tested is the DME output, not the check
    task = load_task(with_typicality_cut(zero_shot_checkpoint, tmp_path / "open.ckpt", float("inf"))).eval()
    (answer,) = screen_files(task, sorted(one_photograph.iterdir()), task.hparams.image_size)
    decision = answer.row.decision
    card = card_of_task(task)
    assert decision is not None and 0 <= decision.p_dme <= 1
    assert card.dme_cut is not None and decision.dme == (decision.p_dme >= card.dme_cut)
    page = cards([answer], card)
    assert f"P(DME) {decision.p_dme:.3f}, DME cut {card.dme_cut:.3f}" in page
