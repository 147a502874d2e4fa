"""``drgrade VERB --help``: the real parser's text, named as drgrade runs it, remembered (no torch import)."""

import subprocess
import sys

import pytest

from drgrade.cli import main
from drgrade.commands import VERBS
from tests.conftest import ROOT


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
    code = (
        "import sys\nfrom drgrade.cli import main\ntry:\n    main(['fit', '--help'])\n"
        "finally:\n    print('torch' in sys.modules, 'lightning' in sys.modules, file=sys.stderr)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0
    assert run.stderr.strip() == "False False"
    assert run.stdout == live and "--trainer.max_epochs" in live


def test_a_verbs_help_names_the_command_as_run_and_says_what_the_verb_does(help_cache, capsys):
    for verb in ("fit", "export"):
        text = printed_help([verb, "--help"], capsys)
        assert text.startswith(f"usage: drgrade {verb} [-c CONFIG]")
        assert " ".join(VERBS[verb].summary.split()[:6]) in " ".join(text.split())
        for wrong in ("__main__", "[options]", "Lightning Trainer command line tool", "<function"):
            assert wrong not in text


def test_a_changed_key_asks_the_live_parser_and_one_text_is_kept_per_verb(help_cache, capsys, monkeypatch):
    narrow = printed_help(["synth", "--help"], capsys)
    monkeypatch.setenv("COLUMNS", "160")
    wide = printed_help(["synth", "--help"], capsys)
    assert max(map(len, wide.splitlines())) > 100 >= max(map(len, narrow.splitlines()))
    assert [p.read_text() for p in help_cache.glob("synth-*.txt")] == [wide]


def test_help_with_other_options_is_always_live(help_cache, capsys):
    printed_help(["synth", "--out", "x", "--help"], capsys)
    assert not help_cache.exists()
