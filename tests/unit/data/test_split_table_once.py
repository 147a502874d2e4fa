"""The split table is printed once per process; later stages on that split (reproduce) say so in a line."""

import logging

from drgrade.data import DRDataModule, datamodule
from drgrade.data.sources import write_synthetic


def test_a_second_data_module_on_the_same_split_names_it_in_one_line(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(datamodule, "SHOWN_TABLES", set())
    write_synthetic(tmp_path, num_aptos=30, num_messidor=15, image_size=64, seed=0)
    roots = {"roots": {"aptos2019": str(tmp_path / "aptos2019"), "messidor2": str(tmp_path / "messidor2")}}
    printed = []
    for _ in range(2):
        with caplog.at_level(logging.INFO):
            DRDataModule(**roots, image_size=64, num_workers=0, cache=False).setup("fit")
        printed.append("\n".join(r.getMessage() for r in caplog.records if "DR data" in r.getMessage()))
        caplog.clear()
    assert "Proliferative" in printed[0] and "aptos2019" in printed[0]  # the grade and source tables
    assert printed[1] == "DR data: 43 images, split as shown above (split.csv in the run)"
