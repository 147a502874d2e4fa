"""Backbone families in one registry: adding a family is one entry, and every question goes through it."""

from drgrade.models import backbones
from drgrade.models.backbones import (
    FAMILIES,
    FLAIR,
    Family,
    build_backbone,
    normalisation_of,
    weights_problems,
)


def test_a_registered_family_answers_build_normalisation_and_weight_checks(monkeypatch):
    built = []
    toy = Family(
        build=lambda *args: built.append(args) or "a toy backbone",
        normalisation=lambda: ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        weights_problems=lambda name, pretrained, text: [f"{name}: {pretrained} missing"],
    )
    monkeypatch.setitem(FAMILIES, "toy", toy)
    assert build_backbone("toy", "w.pt", 64) == "a toy backbone"
    assert built == [("toy", "w.pt", 64, None, True, True)]
    assert normalisation_of("toy") == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert weights_problems("toy", "w.pt") == ["toy: w.pt missing"]


def test_flair_and_open_clip_are_entries_of_the_registry():
    assert FAMILIES[FLAIR].normalisation() == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert backbones.family_of("RN50") is backbones.OPEN_CLIP and normalisation_of(None)[0][0] < 0.5
    assert weights_problems("RN-tiny", None) == []
