"""The first minutes: typos answered before anything loads, downloads found as unpacked, Ctrl+C explained."""

import logging
import subprocess
import warnings

import pytest
from lightning.pytorch.callbacks import Callback

from drgrade.cli import main
from drgrade.commands.reproduce import real_data_options
from drgrade.console import quiet_console
from drgrade.data.sources import downloaded
from tests.conftest import ROOT, TINY, cli_args, drgrade_in_a_fresh_process


def test_a_misspelt_config_path_is_answered_with_the_closest_file_before_any_verb_loads(capsys):
    run, heavy = drgrade_in_a_fresh_process(["fit", "--config", "configs/fcn_clp.yaml"])
    assert run.returncode == 2 and not heavy  # answered before torch was imported
    assert "--config configs/fcn_clp.yaml: no such file; did you mean configs/fcn_clip.yaml?" in run.stderr


def test_a_kaggle_named_download_folder_is_found(tmp_path):
    folder = tmp_path / "aptos2019-blindness-detection"
    folder.mkdir()
    (folder / "train.csv").write_text("id_code,diagnosis\n")
    assert downloaded(tmp_path) == {"aptos2019": folder}
    assert dict(real_data_options(tmp_path).items)["--data.roots.aptos2019"] == str(folder)


def test_make_reproduce_table3_hands_args_on():
    run = subprocess.run(
        [
            "make",
            "-n",
            "-o",
            ".venv/.installed",
            "reproduce-table3",
            "DATA=/d",
            "ARGS=--trainer.max_epochs 2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert "reproduce --data /d --paper --trainer.max_epochs 2" in run.stdout


def test_export_help_names_its_choices_not_a_function():
    from jsonargparse import ArgumentParser

    from drgrade.commands import export

    parser = ArgumentParser(prog="drgrade export")
    export.add_arguments(parser)
    text = parser.format_help()
    assert "<lambda>" not in text and "<function" not in text and "int8" in text


def test_lightnings_weights_only_note_is_not_shown(caplog):
    quiet_console()
    with caplog.at_level(logging.INFO):
        logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").info(
            "`weights_only` was not set, defaulting to `False`."
        )
    assert "weights_only" not in caplog.text


def test_drgrades_own_warnings_print_as_one_line_and_others_as_python_shows_them():
    from drgrade import console

    quiet_console()
    own = warnings.formatwarning(
        "the INT8 model has no typicality check", UserWarning, console.__file__, 70, "x = 1"
    )
    assert own == "warning: the INT8 model has no typicality check\n"
    other = warnings.formatwarning("deprecated", DeprecationWarning, logging.__file__, 5, "y = 2")
    assert other.startswith(f"{logging.__file__}:5: DeprecationWarning: deprecated") and "y = 2" in other


class Interrupt(Callback):
    """Ctrl+C during the first training batch."""

    def on_train_batch_start(self, *args):
        raise KeyboardInterrupt


def test_ctrl_c_in_fit_says_how_to_resume_without_a_traceback(synthetic, tmp_path, capsys):
    interrupt = "--trainer.callbacks+=tests.integration.test_first_minutes.Interrupt"
    with pytest.raises(SystemExit) as stop:
        main(cli_args("fit", "fcn_clip", synthetic, tmp_path, interrupt))
    error = capsys.readouterr().err
    assert stop.value.code == 130
    assert (
        "drgrade fit: interrupted. To carry on where it stopped, run the same command with --ckpt_path last"
        in error
    )
    assert "Traceback" not in error
    assert stop.value.__suppress_context__  # no chained traceback either


def test_demo_roots_in_two_folders_are_refused_before_any_run_folder_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", "configs/fcn_clip.yaml", "--config", "configs/demo.yaml",
              "--data.roots.aptos2019", str(tmp_path / "elsewhere" / "aptos")])  # fmt: skip
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "cannot start" in err and "are in different folders" in err
    assert not (tmp_path / "runs").exists()


def test_missing_data_names_the_data_the_checkpoint_was_fitted_on(
    synthetic, zero_shot_checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the config's default data/aptos2019 is not here
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "test",
                "--config",
                "configs/zero_shot.yaml",
                "--config",
                str(TINY),
                "--ckpt_path",
                str(zero_shot_checkpoint),
            ]
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "no train.csv there" in err
    assert (
        f"to use the data this checkpoint was fitted on: --data.roots.aptos2019 {synthetic / 'aptos2019'}"
        in err
    )
