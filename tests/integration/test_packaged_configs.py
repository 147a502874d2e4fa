"""The shipped configs live inside the package: ``--config configs/NAME.yaml`` works from any folder."""

from __future__ import annotations

import tomllib

import pytest
import yaml

from drgrade import CONFIGS
from drgrade.cli import main
from tests.conftest import ROOT


def test_configs_ship_as_package_data_and_the_checkout_links_to_them():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "configs/*.yaml" in package_data["drgrade"]
    shipped = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"zero_shot.yaml", "fcn_clip.yaml", "ranking.yaml", "ensemble.yaml", "trainer.yaml"} <= shipped
    assert (ROOT / "configs").resolve() == CONFIGS.resolve()


def test_a_config_named_configs_slash_name_is_found_outside_the_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", "configs/zero_shot.yaml", "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    # the model config's relative `trainer: trainer.yaml` and `data: data.yaml` were read beside it
    assert printed["model"]["class_path"] == "drgrade.tasks.ZeroShotCLIP"
    assert printed["data"]["target_counts"] == [445, 200, 200, 180, 180]
    writers = [c["class_path"] for c in printed["trainer"]["callbacks"]]
    assert "drgrade.callbacks.EvaluationWriter" in writers


def test_a_misspelt_shipped_config_is_answered_with_its_name_outside_the_checkout(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", "configs/fcn_clp.yaml"])
    assert exit_.value.code == 2
    assert "did you mean configs/fcn_clip.yaml" in capsys.readouterr().err
