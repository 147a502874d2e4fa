"""``drgrade VERB --help``: the real parser's text, named as drgrade runs it, remembered (no torch import)."""

import subprocess
import sys

import pytest

from drgrade.cli import main
from drgrade.commands import VERBS
from tests.conftest import ROOT, drgrade_in_a_fresh_process


@pytest.fixture
def help_cache(tmp_path, monkeypatch):
    """A fresh help cache and a fixed width (the text is wrapped to it)."""
    monkeypatch.setenv("DRGRADE_HELP_DIR", str(tmp_path / "help"))
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path / "help"


def printed_help(args, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    return capsys.readouterr().out


def test_a_second_help_prints_the_live_parsers_text_without_importing_torch(help_cache, capsys):
    live = printed_help(["fit", "--help"], capsys)
    run, heavy = drgrade_in_a_fresh_process(["fit", "--help"])
    assert run.returncode == 0 and not heavy
    assert run.stdout == live and "--trainer.max_epochs" in live


def test_a_verbs_help_names_the_command_as_run_and_says_what_the_verb_does(help_cache, capsys):
    for verb in ("fit", "export"):
        text = printed_help([verb, "--help"], capsys)
        assert text.startswith(f"usage: drgrade {verb} [")  # [-h] [-c CONFIG] in older jsonargparse
        assert " ".join(VERBS[verb].summary.split()[:6]) in " ".join(text.split())
        for wrong in ("__main__", "[options]", "Lightning Trainer command line tool", "<function"):
            assert wrong not in text


def test_a_narrower_terminal_asks_the_live_parser_and_wider_ones_share_the_widest_text(
    help_cache, capsys, monkeypatch
):
    widest = printed_help(["synth", "--help"], capsys)  # COLUMNS 100: the widest kept
    monkeypatch.setenv("COLUMNS", "60")
    narrow = printed_help(["synth", "--help"], capsys)
    assert max(map(len, narrow.splitlines())) <= 60 < max(map(len, widest.splitlines())) <= 100
    monkeypatch.setenv("COLUMNS", "160")
    assert printed_help(["synth", "--help"], capsys) == widest
    assert sorted(p.read_text() for p in help_cache.glob("synth-*.txt")) == sorted([widest, narrow])


def test_an_edited_source_file_asks_the_live_parser_and_replaces_the_text(help_cache, capsys, monkeypatch):
    from drgrade.commands import help_cache as module

    printed_help(["synth", "--help"], capsys)
    before = list(help_cache.glob("synth-*.txt"))
    monkeypatch.setattr(module, "help_key", lambda verb: "another-key")
    printed_help(["synth", "--help"], capsys)
    assert [p.name for p in help_cache.glob("synth-*.txt")] == ["synth-100-another-key.txt"] != before


def test_installing_keeps_every_verbs_help_so_the_first_one_answers_at_once(help_cache, monkeypatch, capsys):
    from drgrade.cli import keep_help
    from drgrade.commands.help_cache import help_file

    monkeypatch.setenv("COLUMNS", "40")  # what the installer's terminal is does not matter
    keep_help()
    assert "the help of 13 of 13 verbs is kept" in capsys.readouterr().out
    monkeypatch.setenv("COLUMNS", "100")
    assert all(help_file(verb).is_file() for verb in VERBS)
    code = "from drgrade.cli import main\nmain(['predict', '--help'])"
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0 and run.stdout == help_file("predict").read_text()
    assert " torch\n" not in run.stderr and " lightning\n" not in run.stderr


def test_help_with_other_options_is_always_live(help_cache, capsys):
    printed_help(["synth", "--out", "x", "--help"], capsys)
    assert not help_cache.exists()


def test_a_misspelt_option_is_answered_from_the_remembered_names_before_torch_loads(help_cache, capsys):
    printed_help(["fit", "--help"], capsys)  # the live parser: its text and option names kept
    run, heavy = drgrade_in_a_fresh_process(
        ["fit", "--config", "configs/fcn_clip.yaml", "--trainer.max_epoch", "2"]
    )
    assert run.returncode == 2 and not heavy
    assert (
        run.stderr
        == "drgrade fit: error: unknown option --trainer.max_epoch; did you mean --trainer.max_epochs?"
    )


def test_the_remembered_names_refuse_no_option_the_parser_takes(help_cache, capsys):
    from drgrade.cli import refuse_misspelt_options

    printed_help(["predict", "--help"], capsys)
    valid = [
        "--config=configs/fcn_clip.yaml",
        "--ckpt_path", "best",
        "--out", "graded.csv",  # predict's own
        "--no_allow_untrained",
        "--data.roots.ddr", "null",  # a key under a dict option
        "--model.lr", "0.1",  # short for --model.init_args.lr
        "--model.init_args.decoder_widths", "[8]",  # FCN-CLIP's, not in the help text
        "--trainer.callbacks+=lightning.pytorch.callbacks.RichModelSummary",
        "--trainer.logger.init_args.project", "x",
        "--model.help", "FCNCLIP",
    ]  # fmt: skip
    refuse_misspelt_options("predict", valid)
    refuse_misspelt_options("predict", ["--model", "mine.tasks.MyTask", "--model.init_args.my_option", "1"])
    with pytest.raises(SystemExit):
        refuse_misspelt_options("predict", ["--model.init_args.my_option", "1"])
    assert "drgrade predict: error: unknown option --model.init_args.my_option" in capsys.readouterr().err


def test_a_misspelt_source_name_is_answered_from_the_remembered_names_on_every_verb_with_data_roots(
    help_cache, capsys
):
    from drgrade.cli import refuse_misspelt_options

    for verb in ("predict", "gate"):
        printed_help([verb, "--help"], capsys)
        with pytest.raises(SystemExit):
            refuse_misspelt_options(verb, ["--data.roots.messidr2", "x"])
        said = capsys.readouterr().err
        answer = "unknown option --data.roots.messidr2; did you mean --data.roots.messidor2?"
        assert f"drgrade {verb}: error: {answer}" in said
        refuse_misspelt_options(verb, ["--data.roots.messidor2", "x"])


def test_the_cache_folder_keeps_files_it_did_not_write_and_a_damaged_names_file_is_not_trusted(
    help_cache, capsys
):
    from drgrade.cli import refuse_misspelt_options
    from drgrade.commands.help_cache import options_file

    help_cache.mkdir(parents=True)
    theirs = [help_cache / "synth-100-results.txt", help_cache / "synth-options-2025.json"]
    for path in theirs:
        path.write_text("the user's")
    printed_help(["synth", "--help"], capsys)
    assert all(path.read_text() == "the user's" for path in theirs)
    for damaged in ("[1, 2]", "[]", '["--x"]', "{}", "[tru"):
        options_file("synth").write_text(damaged)
        refuse_misspelt_options("synth", ["--out", "x", "--num_aptos", "5"])  # no crash, nothing refused


@pytest.mark.parametrize(
    ("content", "refusal"),
    [(b"\xff\xfe latin-1 \xe9", "not a YAML text file"), (b"- a\n- b\n", "a config holds sections")],
)
def test_a_config_that_is_not_yaml_sections_is_refused_before_any_verb_loads(tmp_path, content, refusal):
    config = tmp_path / "c.yaml"
    config.write_bytes(content)
    run, heavy = drgrade_in_a_fresh_process(["fit", "--config", str(config)])
    assert run.returncode == 2 and not heavy and f"--config {config}: {refusal}" in run.stderr
    run, _ = drgrade_in_a_fresh_process(["fit", "--config", str(tmp_path)])
    assert run.returncode == 2 and "not a file; --config takes a YAML config file" in run.stderr
