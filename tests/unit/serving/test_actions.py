"""Every photograph gets an action; the page says it in words, beside the cut and the model line."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drgrade.decision.actions import NO_REFER, REFER, TO_GRADER, photo_action, screener_reason
from drgrade.predictions import Decision, PredictionRow, csv_text
from drgrade.serving.card import card_facts
from drgrade.serving.model_card import ModelCard, card_of_task, data_words

RULE = {
    "operating_points": [
        {"level": "referable", "target": "sensitivity", "goal": 0.9, "cut": 0.3},
        {"level": "referable", "target": "specificity", "goal": 0.95, "cut": 0.7},
    ],
    "uncertainty_cutoff": 1.6,
}
CARD = ModelCard("FCN-CLIP", "RN50, weights openai", "12 epoch(s)", "aptos2019 (SYNTHETIC)", "b.ckpt", RULE)


def decision(probabilities, by_score: bool, uncertainty: float, grader: bool = False) -> Decision:
    grade = max(range(5), key=lambda k: probabilities[k])
    return Decision(
        tuple(probabilities), grade, sum(probabilities[2:]), grade >= 2, by_score, uncertainty, grader
    )


def parsed(rows: list[PredictionRow]) -> list[dict]:
    return list(csv.DictReader(io.StringIO(csv_text(rows))))


def test_every_row_has_an_action_and_rows_without_a_grade_go_to_a_grader():
    assert photo_action(False, False, False) == TO_GRADER
    assert photo_action(True, True, True) == REFER  # uncertainty never holds back a referral
    assert photo_action(True, False, True) == TO_GRADER and photo_action(True, False, False) == NO_REFER
    rows = [
        PredictionRow("dark.png", error="ungradable: under-exposed (brightness 12)"),
        PredictionRow("broken.png", error="not a decodable image"),
        PredictionRow("skip.txt", error="skipped: not an image"),
        PredictionRow("a.png", decision([0.6, 0.2, 0.1, 0.05, 0.05], False, 0.4)),
        PredictionRow("b.png", decision([0.5, 0.1, 0.2, 0.1, 0.1], True, 0.5)),
        PredictionRow("c.png", decision([0.3, 0.3, 0.2, 0.1, 0.1], False, 1.5, grader=True)),
    ]
    written = parsed(rows)
    assert [r["action"] for r in written] == [TO_GRADER] * 3 + [NO_REFER, REFER, TO_GRADER]
    assert [r["refer_to_grader"] for r in written] == ["1", "1", "1", "0", "0", "1"]
    assert all(r["grade"] == "" for r in written[:3])


def test_screener_words_for_each_reason():
    assert screener_reason("ungradable: under-exposed (brightness 12)") == (
        "photograph too dark",
        "Retake if the patient is still here.",
    )
    assert screener_reason("ungradable: out of focus (focus 3)")[0] == "photograph out of focus"
    assert screener_reason("out of distribution: far from training")[0].startswith("photograph unlike")
    assert screener_reason("not graded: probabilities are NaN")[0] == "the model's output was unusable"
    assert screener_reason("not a decodable image")[0] == "file could not be read"


def test_cards_lead_with_the_action_show_the_cut_and_say_confident_only_when_it_is():
    pytest.importorskip("gradio")
    from drgrade.serving.app import action_text, cards, certainty, results_table
    from drgrade.serving.screening import Screening

    dark = PredictionRow("dark.png", error="ungradable: under-exposed (brightness 12)")
    assert (
        action_text(dark, CARD)
        == "Send to a grader: photograph too dark. Retake if the patient is still here."
    )
    # the case: top probability 0.32, uncertainty 1.52 nats (under the cut) is not "confident"
    flat = PredictionRow("flat.png", decision([0.32, 0.2, 0.2, 0.14, 0.14], True, 1.52))
    assert certainty(flat, CARD).startswith("not confident")
    sure = PredictionRow("sure.png", decision([0.9, 0.05, 0.03, 0.01, 0.01], False, 0.4))
    assert certainty(sure, CARD) == "confident"
    unsure = PredictionRow("unsure.png", decision([0.3, 0.3, 0.2, 0.1, 0.1], False, 1.61, grader=True))
    assert certainty(unsure, CARD) == "uncertain: refer to a grader"
    assert action_text(unsure, CARD).startswith("Send to a grader: the model is unsure")
    # "No DR" and "refer" together only with the reason, the cut beside the score
    said = action_text(flat, CARD)
    assert said.startswith("Refer to an eye specialist: P(referable) 0.480 is at or over the cut 0.300")
    assert "(No DR) would not refer" in said and "90% sensitivity" in said
    assert (
        action_text(sure, CARD)
        == "No referral: P(referable) 0.050 is under the cut 0.300. Rescreen as scheduled."
    )
    # referred for DME alone: says so, with P(DME) against its cut, and that P(referable) is under its own
    macular = PredictionRow("m.png", sure.decision.clinical(None, 0.82, 0.5))
    assert macular.action == "refer"
    dme_card = replace(CARD, dme_cut=0.5)
    assert action_text(macular, dme_card) == (
        "Refer to an eye specialist: likely diabetic macular edema (P(DME) 0.820 is at or over its cut "
        "0.500), although P(referable) 0.050 is under the cut 0.300."
    )
    answers = [Screening(dark), Screening(unsure, np.zeros((32, 32, 3), np.uint8))]
    page = cards(answers, CARD)
    assert page.index("Send to a grader: photograph too dark") < page.index("dark.png")
    table = results_table(answers, CARD)
    assert "<td>to grader</td>" in table and "<td>0.300</td>" in table


def test_model_card_line_names_model_weights_training_data_and_checkpoint(zero_shot_checkpoint):
    from drgrade.tasks import load_task

    task = load_task(zero_shot_checkpoint)
    card = card_of_task(task)
    line = card.line()
    assert line.startswith("Model: Zero-shot | backbone: ")
    assert "random weights (not pretrained)" in line  # the tiny test model's backbone
    assert "not trained (zero-shot" in line
    assert "aptos2019 (SYNTHETIC)" in line and "messidor2 (SYNTHETIC)" in line
    assert f"{zero_shot_checkpoint.name} sha256:" in line
    cut, goal = card.referable_cut()
    assert goal == 0.9 and (cut is None or 0 <= cut <= 1)
    assert math.isfinite(card.uncertainty_cut())
    # an exported model's page reads the same line from the export's model card (its one source)
    facts = json.loads(json.dumps(card_facts(task, 64, None)))
    again = ModelCard.from_facts(facts, card.rule, "fallback")
    assert again == card and data_words(None) == "not recorded"
    unexported = ModelCard.from_facts(None, card.rule, "fallback").line()
    assert unexported.startswith("Model: fallback | backbone: unknown")


def test_a_batch_uploaded_with_its_manifest_is_decided_per_eye_and_patient(synthetic, tmp_path):
    pytest.importorskip("gradio")
    import shutil

    from drgrade.serving.app import UPLOADS, answer_batch
    from drgrade.serving.screening import Screening

    photos = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]
    server = tmp_path / "server"  # where the page finds uploads (emptied folders are removed)
    server.mkdir()
    uploads = []
    for source, name in zip(photos, ("a_l.png", "a_r.png", "b_l.png"), strict=True):
        shutil.copy(source, server / f"upload{len(uploads)}")
        uploads.append({"path": str(server / f"upload{len(uploads)}"), "orig_name": name})
    (server / "m").write_text("file,patient_id,eye\na_l.png,A,left\na_r.png,A,right\nb_l.png,B,left\n")
    uploads.append({"path": str(server / "m"), "orig_name": "manifest.csv"})
    scores = {"a_l.png": 0.1, "a_r.png": 0.9, "b_l.png": 0.2}

    def grade(paths):  # a stand-in model: refers what scores over 0.5
        assert len(paths) == 3  # the manifest is not a photograph
        names = [u["orig_name"] for u in uploads[:3]]
        return [
            Screening(
                PredictionRow(str(p), decision([0.5, 0.1, 0.2, 0.1, 0.1], scores[n] > 0.5, 0.3)),
                np.zeros((16, 16, 3), np.uint8),
            )
            for p, n in zip(paths, names, strict=True)
        ]

    table, _ = answer_batch(grade, CARD, uploads, "session-1")
    assert '<table id="drgrade-exams">' in table
    assert "<td>A</td><td>no refer</td><td>refer</td><td>refer</td>" in table
    assert "<td>B</td><td>no refer</td><td>no photograph</td><td>no refer</td>" in table
    UPLOADS.release("session-1")  # the page closed: every upload removed, the manifest too
    assert not any(Path(u["path"]).exists() for u in uploads)
    server.mkdir(exist_ok=True)
    (server / "m2").write_text("file,patient_id,eye\na_l.png,A,middle\n")
    bad = [{"path": str(server / "m2"), "orig_name": "manifest.csv"}]
    table, shown = answer_batch(grade, CARD, bad, "session-2")
    assert "manifest.csv row 2: eye &#x27;middle&#x27;" in table  # its uploaded name
    assert str(tmp_path) not in table and shown == ""
