"""Exams: per-eye and per-patient decisions, exams.csv in test / predict, and patient-level figures."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import pytest
from scipy.stats import binomtest

from drgrade.cli import main
from drgrade.errors import OptionError
from drgrade.exams import decide_exams, exam_ids
from drgrade.predictions import COLUMNS
from tests.conftest import cli_args


def row(file, patient, eye, action, p=0.1, grade="0", true="", error=""):
    base = dict.fromkeys(COLUMNS, "")
    graded = action != "to grader" or not error
    return base | {
        "file": file,
        "patient_id": patient,
        "eye": eye,
        "action": action,
        "p_referable": str(p) if graded else "",
        "grade": grade if graded else "",
        "true_grade": true,
        "error": error,
    }


def test_the_worst_gradable_photograph_decides_an_eye_and_either_eye_the_patient():
    dark = "ungradable: under-exposed (brightness 3)"
    rows = [
        # patient 1: left refers on its second field; right is all ungradable -> refer
        row("1_l1", "1", "left", "no refer", 0.1, true="0"),
        row("1_l2", "1", "left", "refer", 0.7, "2", true="3"),
        row("1_r1", "1", "right", "to grader", error=dark, true="1"),
        # patient 2: an ungradable field beside a gradable one does not make the eye insufficient
        row("2_l1", "2", "left", "to grader", error=dark),
        row("2_l2", "2", "left", "no refer", 0.2, true="1"),
        row("2_r1", "2", "right", "no refer", 0.1, true="0"),
        # patient 3: right eye all ungradable, left no refer -> insufficient
        row("3_l1", "3", "left", "no refer", 0.1, true="0"),
        row("3_r1", "3", "right", "to grader", error="not a decodable image"),
        # patient 4: the worst photograph is too uncertain: a grader decides
        row("4_l1", "4", "left", "no refer", 0.1, true="0"),
        row("4_l2", "4", "left", "to grader", 0.4, true="2"),
        # a photograph naming no patient is its own
        row("lone.png", "", "", "no refer", 0.05),
    ]
    exams = {e.patient_id: e for e in decide_exams(rows)}
    assert exams["1"].eyes["left"][0] == "refer" and "1_l2" in exams["1"].eyes["left"][1]
    assert exams["1"].eyes["right"] == ("insufficient", "no gradable photograph (photograph too dark)")
    assert exams["1"].decision == "refer" and exams["1"].true_worst_grade == 3
    assert exams["2"].eyes["left"][0] == "no refer" and exams["2"].decision == "no refer"
    assert exams["3"].decision == "insufficient"
    assert exams["4"].eyes["left"][0] == "insufficient" and "too uncertain" in exams["4"].eyes["left"][1]
    assert exams["lone.png"].decision == "no refer" and exams["lone.png"].true_worst_grade is None
    assert exams["1"].cells()[3:7] == ["refer", "insufficient", "", "refer"]


def test_manifest_and_pattern_name_patients_and_eyes(tmp_path):
    files = [Path("a/10_left.jpeg"), Path("a/10_right.jpeg"), Path("a/odd.png")]
    found = exam_ids(files, pattern=r"(?P<patient>\d+)_(?P<eye>left|right)")
    assert [(f.patient_id, f.eye) for f in found[:2]] == [("10", "left"), ("10", "right")] and found[
        2
    ] is None
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,patient_id,eye,field\n10_left.jpeg,p1,OS,macula\n10_right.jpeg,p1,od,disc\n")
    found = exam_ids(files, manifest=manifest)
    assert (found[0].eye, found[0].field, found[1].eye) == ("left", "macula", "right") and found[2] is None
    manifest.write_text("file,patient_id,eye\n10_left.jpeg,p1,middle\n10_left.jpeg,p1,left\n,p2,left\n")
    with pytest.raises(OptionError) as error:
        exam_ids(files, manifest=manifest)
    assert "row 2: eye 'middle'" in str(error.value) and "row 3: '10_left.jpeg' listed twice" in str(
        error.value
    )
    assert "row 4: empty file" in str(error.value)
    with pytest.raises(OptionError, match="named groups"):
        exam_ids(files, pattern=r"(?P<patient>\d+)")


def recomputed(rows: list[dict]) -> dict:
    """Patient-level figures from predictions.csv alone, written apart from drgrade.exams."""
    eyes: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        eyes.setdefault((r["patient_id"] or r["file"], r["eye"]), []).append(r)
    eye_state = {}
    for key, photos in eyes.items():
        graded = [p for p in photos if p["grade"]]
        if any(p["action"] == "refer" for p in graded):
            eye_state[key] = "refer"
        elif not graded:
            eye_state[key] = "insufficient"
        else:
            worst = max(graded, key=lambda p: float(p["p_referable"]))
            eye_state[key] = "insufficient" if worst["action"] == "to grader" else "no refer"
    patients: dict[str, dict] = {}
    for (patient, _), state in eye_state.items():
        patients.setdefault(patient, {"states": [], "worst": -1, "dme": False, "vtdr": False})
        patients[patient]["states"].append(state)
    for r in rows:
        entry = patients[r["patient_id"] or r["file"]]
        entry["worst"] = max(entry["worst"], int(r["true_grade"]))
        entry["dme"] |= r["true_dme"] == "1"
        entry["vtdr"] |= r["vtdr"] == "1"
    decided = {
        p: e for p, e in patients.items() if "refer" in e["states"] or "insufficient" not in e["states"]
    }
    out = {"num_patients": len(patients), "decided": len(decided)}
    for level, start, called in (
        ("referable", 2, lambda e: "refer" in e["states"]),
        ("vtdr", 3, lambda e: e["vtdr"]),
    ):
        pos = [e for e in decided.values() if e["worst"] >= start or e["dme"]]
        neg = [e for e in decided.values() if not (e["worst"] >= start or e["dme"])]
        out[level] = (sum(map(called, pos)), len(pos), sum(not called(e) for e in neg), len(neg))
    return out


def check_exams_and_patient_level(out: Path) -> None:
    """A ``drgrade test`` run's exams.csv and metrics.json patient-level figures equal a recomputation.

    Called by tests/integration/test_cli.py's zero-shot ``test`` run (one evaluation serves both).
    """
    rows = list(csv.DictReader((out / "predictions.csv").open(newline="")))
    assert rows and all(r["action"] in ("refer", "no refer", "to grader") for r in rows)
    messidor = [r for r in rows if r["source"] == "messidor2"]
    assert messidor and all(r["eye"] in ("left", "right") for r in messidor)  # from the exam-pairs sheet
    document = json.loads((out / "metrics.json").read_text())
    figures = document["patient_level"]
    expected = recomputed(rows)
    assert figures["num_patients"] == expected["num_patients"] and figures["decided"] == expected["decided"]
    assert figures["imageability"] == pytest.approx(expected["decided"] / expected["num_patients"])
    interval = binomtest(expected["decided"], expected["num_patients"]).proportion_ci(method="wilson")
    assert figures["imageability_ci"] == pytest.approx([interval.low, interval.high])
    for level in ("referable", "vtdr"):
        hits, positives, clear, negatives = expected[level]
        assert figures[level]["positives"] == positives and figures[level]["negatives"] == negatives
        assert figures[level]["sensitivity"] == pytest.approx(hits / positives)
        assert figures[level]["specificity"] == pytest.approx(clear / negatives)
    cut = document["operating_points"][0]["threshold"]
    assert figures["cut"] == pytest.approx(cut)  # the validation-chosen cut the decisions were made at
    assert figures["published"]["results"][0]["sensitivity"] == 0.872
    exams = list(csv.DictReader((out / "exams.csv").open(newline="")))
    assert len(exams) == expected["num_patients"]
    curve = document["referral"]["patients"]
    shares = curve["imageability"]  # every graded photograph decided at 0%; fewer as more are deferred
    assert shares[0] == 1.0 and all(a >= b for a, b in itertools.pairwise(shares))


def test_predict_writes_exams_from_a_manifest(synthetic, zero_shot_checkpoint, tmp_path):
    folder = tmp_path / "clinic"
    folder.mkdir()
    photos = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]
    names = ["p1_left.png", "p1_right.png", "p2_left.png"]
    for source, name in zip(photos, names, strict=True):
        shutil.copy(source, folder / name)
    (folder / "p2_right.png").write_bytes(b"not a photograph")
    manifest = tmp_path / "manifest.csv"
    lines = [f"{n},{n.split('_')[0]},{n.split('_')[1][:-4]},macula" for n in [*names, "p2_right.png"]]
    manifest.write_text("file,patient_id,eye,field\n" + "\n".join(lines) + "\n")
    args = cli_args(
        "predict", "zero_shot", synthetic, tmp_path / "runs", "--ckpt_path", str(zero_shot_checkpoint)
    )
    main([*args, "--data.predict_dir", str(folder), "--data.exam_manifest", str(manifest)])
    out = next((tmp_path / "runs").rglob("exams.csv"))
    exams = {e["patient_id"]: e for e in csv.DictReader(out.open(newline=""))}
    assert set(exams) == {"p1", "p2"} and exams["p1"]["photographs"] == "2"
    assert exams["p2"]["right"] == "insufficient" and "file could not be read" in exams["p2"]["reasons"]
    predictions = list(csv.DictReader(out.with_name("predictions.csv").open(newline="")))
    assert {(r["patient_id"], r["eye"], r["field"]) for r in predictions} >= {("p2", "right", "macula")}
    if exams["p2"]["left"] != "refer":
        assert exams["p2"]["decision"] == "insufficient"


def test_report_shows_patient_figures_beside_the_labelled_published_trials(tmp_path):
    import torch

    from drgrade.evaluation.patients import patient_level
    from tests.integration.test_report_and_protocol import fake_run

    targets = torch.tensor([0, 0, 1, 2, 3, 4])
    run = fake_run(tmp_path / "a", "FCNCLIP", targets.clone(), targets)
    rows = [
        row("1_l", "1", "left", "refer", 0.8, "2", true="2"),
        row("1_r", "1", "right", "no refer", 0.1, true="0"),
        row("2_l", "2", "left", "no refer", 0.1, true="0"),
        row("3_l", "3", "left", "to grader", error="ungradable: out of focus", true="3"),
    ]
    document = json.loads((run / "metrics.json").read_text())
    document["patient_level"] = patient_level(decide_exams(rows), 0.3)
    assert document["patient_level"]["imageability"] == pytest.approx(2 / 3)
    (run / "metrics.json").write_text(json.dumps(document))
    main(["report", str(run), "--out", str(tmp_path / "out")])
    table = list(csv.reader((tmp_path / "out" / "patient_level.csv").read_text().splitlines()))
    assert table[0] == ["Model", "Patients", "Imageability", "Level", "Sensitivity", "Specificity"]
    referable = table[1]
    assert referable[1:4] == ["3", "0.667 (0.208-0.939)", "referable"] and referable[4].startswith("1.000")
    published = [r for r in table if "published trial results on other patients" in r[0]]
    assert published[0][0].startswith("IDx-DR") and published[0][2] == "0.961 (0.946-0.973)"
    assert "Patients: exam decisions" in (tmp_path / "out" / "report.md").read_text()
