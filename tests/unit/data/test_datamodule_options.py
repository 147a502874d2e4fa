"""The data module: one intake cache, and the quality limits as one option read from one place."""

from drgrade.data import DRDataModule


def test_the_data_module_keeps_one_intake_cache(tmp_path):
    data = DRDataModule(aptos_root=None, messidor_root=None, cache_dir=str(tmp_path), image_size=64)
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
