"""One intake cache per data module: what it learns (a full disk) holds for the whole run."""

from drgrade.data import DRDataModule


def test_the_data_module_keeps_one_intake_cache(tmp_path):
    data = DRDataModule(aptos_root=None, messidor_root=None, cache_dir=str(tmp_path), image_size=64)
    cache = data.intake
    assert data.intake is cache and cache.root == tmp_path
    cache.root = None  # what a full disk does: storing is off
    assert data.intake.root is None  # still off at the next access, not a fresh cache writing again
    data.hparams.image_size = 96  # another input size is another cache
    assert data.intake is not cache and data.intake.size == 96 and data.intake.root == tmp_path
