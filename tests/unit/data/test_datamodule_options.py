"""The data module: one intake cache, and the quality limits as one option read from one place."""

from drgrade.data import DRDataModule


def test_the_data_module_keeps_one_intake_cache(tmp_path):
    data = DRDataModule(roots={}, cache_dir=str(tmp_path), image_size=64)
    cache = data.intake
    assert data.intake is cache and cache.root == tmp_path
    cache.root = None  # what a full disk does: storing is off
    assert data.intake.root is None  # still off at the next access, not a fresh cache writing again
    data.hparams.image_size = 96  # another input size is another cache
    assert data.intake is not cache and data.intake.size == 96 and data.intake.root == tmp_path


def test_the_gate_limits_are_one_option_read_from_one_place(tmp_path):
    from drgrade.commands.lightning import DRGradeCLI
    from drgrade.data.images import MAX_PIXELS
    from drgrade.data.quality import DEFAULT_LIMITS, QualityLimits
    from tests.conftest import ROOT, TINY

    assert QualityLimits().max_pixels == MAX_PIXELS  # the 40 MP limit is written once
    assert DRDataModule().quality_limits == DEFAULT_LIMITS
    # the gate is never off (keep/flag/exclude say what is done with its verdict): every mode
    # judges with the configured limits
    for mode in ("keep", "flag", "exclude"):
        data = DRDataModule(quality_gate=mode, quality=QualityLimits(min_side=300))
        assert data.quality_limits.min_side == 300
    args = ["--config", str(ROOT / "configs" / "fcn_clip.yaml"), "--config", str(TINY)]
    args += ["--data.quality.min_side", "300", "--trainer.default_root_dir", str(tmp_path)]
    data = DRGradeCLI(args, run=False).datamodule
    assert data.quality_limits == QualityLimits(min_side=300)


def test_roots_name_sources_by_their_registry_name_and_a_new_source_needs_no_new_option(monkeypatch):
    import dataclasses

    import pytest

    from drgrade.data import datamodule
    from drgrade.data.sources import SOURCES
    from drgrade.errors import OptionError

    data = DRDataModule(roots={"messidor2": "/m", "eyepacs": None})
    assert data.roots == {name: "/m" if name == "messidor2" else None for name in SOURCES}
    with pytest.raises(OptionError, match=r"no data source is called 'aptos'; did you mean aptos2019"):
        DRDataModule(roots={"aptos": "/a"})
    # a dataset module registered in SOURCES is a roots key at once: the data module names none
    added = {**SOURCES, "odir": dataclasses.replace(SOURCES["ddr"], name="odir", folder="odir")}
    monkeypatch.setattr(datamodule, "SOURCES", added)
    assert DRDataModule(roots={"odir": "/o"}).roots["odir"] == "/o"
