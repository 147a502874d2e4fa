"""'Did you mean': the nearest names, only those about as near as the nearest, or a fallback."""

from drgrade.suggest import closest, did_you_mean


def test_the_nearest_names_are_offered_and_far_ones_are_not():
    names = ["max_epochs", "min_epochs", "max_steps", "precision"]
    assert closest("max_epoch", names) == ["max_epochs"]  # min_epochs is further than the margin
    assert set(closest("_epochs", ["max_epochs", "min_epochs", "precision"])) == {"max_epochs", "min_epochs"}
    assert closest("zzz", names) == []


def test_the_hint_is_one_phrase_or_the_fallback():
    assert did_you_mean("seed", ["seeds", "folds"], show=repr) == "; did you mean 'seeds'?"
    assert did_you_mean("zzz", ["seeds"], otherwise="; see --help") == "; see --help"
    assert did_you_mean("fcn_clp", ["fcn_clip", "fcn_clip_finetune"], n=1) == "; did you mean fcn_clip?"
