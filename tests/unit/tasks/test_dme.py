"""DME: read from Messidor-2 and IDRiD, drawn by the generator, learnt by FCN-CLIP, in every row."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drgrade.data.sources import write_layouts
from drgrade.data.sources.idrid import GRADING, PARTS
from drgrade.data.sources.idrid import read as read_idrid
from drgrade.data.sources.messidor2 import read as read_messidor
from drgrade.data.synthetic import render_fundus, seeded_rng
from drgrade.errors import DataValidationError
from drgrade.models.losses import masked_dme_loss
from drgrade.predictions import checked_decisions


def test_messidor2_and_idrid_dme_labels(synthetic, tmp_path):
    records = read_messidor(synthetic / "messidor2").records
    assert {r.dme for r in records} == {0, 1}  # adjudicated_dme, both present
    assert all(r.grade >= 2 for r in records if r.dme == 1)  # the generator draws DME with moderate+
    sheet = list(csv.DictReader((synthetic / "messidor2" / "messidor_data.csv").open()))
    by_name = {row["image_id"].lower(): row for row in sheet}
    assert all(int(by_name[r.path.name.lower()]["adjudicated_dme"]) == r.dme for r in records)

    root = write_layouts(tmp_path, {"idrid": 20}, 64, 0)[0]
    idrid = read_idrid(root).records
    sheets = [root / GRADING / "2. Groundtruths" / name for _, name, _ in PARTS]
    risks = {
        (split, row["Image name"]): int(row["Risk of macular edema "])
        for path, (_, _, split) in zip(sheets, PARTS, strict=True)
        for row in csv.DictReader(path.open())
        if row["Image name"]
    }
    assert {1, 2} <= set(risks.values())  # exudates away from the macula (1) are not DME; near it (2) are
    for record in idrid:
        split, name = record.patient_id.removeprefix("idrid:").split("/")
        assert record.dme == int(risks[split, name] == 2)
    lines = sheets[0].read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:2], "x", "", ""])
    sheets[0].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match="row 2: macular edema 'x' is not a non-negative integer"):
        read_idrid(root)


def test_the_generator_draws_dme_as_exudates_near_the_macula():
    size = 128
    plain, _ = render_fundus(3, size, seeded_rng(0, 9, 1))
    edema, mask = render_fundus(3, size, seeded_rng(0, 9, 1), dme=True)
    changed = np.argwhere(np.abs(edema.astype(int) - plain.astype(int)).max(axis=2) > 20)
    assert len(changed) > 10  # exudates were drawn
    centre = np.array([size / 2, size * 1.25 / 2])
    distance = np.hypot(*(changed - centre).T) / (size * 0.49)
    assert distance.max() < 0.45  # all of them around the macula, near the centre of the fundus
    assert mask[tuple(changed.T)].mean() > 0.5  # and they are lesions in the mask


def test_the_dme_loss_is_masked_where_a_source_has_no_dme_label():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0], requires_grad=True)
    targets = torch.tensor([1, 0, -1, -1])
    loss = masked_dme_loss(logits, targets)
    assert float(loss) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits[:2], targets[:2].float()))
    )
    loss.backward()
    assert logits.grad[2:].abs().sum() == 0 and logits.grad[:2].abs().sum() > 0
    unlabelled = masked_dme_loss(logits, torch.tensor([-1, -1, -1, -1]))
    assert float(unlabelled) == 0.0 and unlabelled.requires_grad


def test_referable_dr_and_vtdr_include_dme():
    probabilities = torch.tensor([[0.7, 0.2, 0.05, 0.03, 0.02], [0.1, 0.1, 0.2, 0.3, 0.3]])
    outputs = (
        probabilities,
        torch.tensor([0, 3]),
        probabilities[:, 2:].sum(1),
        torch.tensor([False, True]),
        torch.tensor([False, True]),
        torch.tensor([0.9, 1.5]),
        torch.tensor([False, False]),
    )
    decided = checked_decisions(outputs, [0.2] * 5, vtdr_cut=0.5, p_dme=[0.8, 0.1], dme_cut=0.6)
    mild, severe = decided
    assert (mild.dme, mild.referable_by_score, mild.referable_dr, mild.vtdr) == (True, False, True, True)
    assert mild.refers  # DME alone refers: "moderate NPDR or worse, or DME"
    assert (severe.dme, severe.vtdr_by_score, severe.vtdr) == (False, True, True)  # 0.6 >= 0.5
    without = checked_decisions(outputs, [0.2] * 5)  # no DME output, no vtDR cut: the grade decides
    assert without[0].p_dme is None and without[0].dme is None and without[1].vtdr
    assert without[0].cells()[-4:] == ["", "", 0, 0]


def check_dme_outputs(run: Path) -> None:
    """A trained FCN-CLIP's test run: the DME columns, the clinical flags and metrics.json's ``dme``.

    Called by tests/integration/test_cli.py's FCN-CLIP fit / test (one training serves both).
    """
    document = json.loads((run / "metrics.json").read_text())
    rows = list(csv.DictReader((run / "predictions.csv").open(newline="")))
    section = document["dme"]
    labelled = [r for r in rows if r["source"] == "messidor2"]
    assert section["labelled_images"] == len(labelled) > 0  # APTOS grades no DME: left out
    cut = section["operating_point"]["threshold"] if section["operating_point"] else None
    for r in rows:
        p = float(r["p_dme"])
        assert 0 <= p <= 1
        if cut is not None and abs(p - cut) > 1e-6:
            assert r["dme"] == str(int(p >= cut))
        dme = r["dme"] == "1"
        assert r["referable_dr"] == str(int(r["referable_by_score"] == "1" or dme))
        assert (r["action"] == "refer") == (r["referable_dr"] == "1")
        severe = float(r["p_severe"]) + float(r["p_proliferative"])
        vtdr_cut = next(
            p["threshold"] for p in document["operating_points"] if p["name"].startswith("vtdr@sens")
        )
        if abs(severe - vtdr_cut) > 1e-6:
            assert r["vtdr"] == str(int(severe >= vtdr_cut or dme))
    assert section["auroc"] is None or 0 <= section["auroc"] <= 1
    assert not math.isnan(section["calibration_error"])
