"""The command line's contract: public Lightning API, optional extras optional, an instant help."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time

import pytest

from drgrade.commands import VERBS
from drgrade.engine import PRIVATE_NAMES
from tests.conftest import ROOT

#: Makes these modules unimportable in a fresh interpreter, as if their extras were not installed
#: (imports fail; libraries that only probe for them find nothing).
BLOCK = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
"""


def python(code: str, blocked: set[str] = frozenset()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(blocked=set(blocked)) + code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            "WANDB_MODE": "disabled",
            "PATH": "/usr/bin:/bin",
            "HOME": str(ROOT),
            "DRGRADE_HELP_DIR": os.environ["DRGRADE_HELP_DIR"],
        },
    )


def test_cli_imports_and_helps_without_the_optional_extras():
    extras = {"onnx", "onnxruntime", "gradio"}
    done = python("import drgrade.cli\nfrom drgrade.cli import main\nmain(['--help'])", extras)
    assert done.returncode == 0, done.stderr
    assert all(verb in done.stdout for verb in VERBS)
    loaded = python(
        "import sys, drgrade.cli\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'lightning', 'onnx', 'onnxruntime', 'gradio'}))"
    )
    assert loaded.stdout.strip() == "[]"  # the help imports nothing heavy
    needs = python("from drgrade.cli import main\nmain(['export', '--ckpt_path', 'x.ckpt'])", extras)
    assert needs.returncode == 2 and "pip install 'drgrade[deploy]'" in needs.stderr
    needs = python("from drgrade.cli import main\nmain(['serve', '--ckpt_path', 'x.ckpt'])", extras)
    assert needs.returncode == 2 and "pip install 'drgrade[app]'" in needs.stderr
    fit = python("from drgrade.cli import main\nmain(['fit', '--help'])", extras)
    assert fit.returncode == 0, fit.stderr


def test_help_is_instant_and_says_what_drgrade_is():
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "drgrade", "--help"], capture_output=True, text=True, check=True
    )
    assert time.perf_counter() - start < 3.0  # the old help imported Lightning first: 15 s
    assert done.stdout.startswith("drgrade: grade diabetic retinopathy")
    for verb in VERBS.values():  # full descriptions, not cut mid-sentence
        assert verb.summary in done.stdout.replace("\n", " ") or verb.summary in done.stdout


@pytest.mark.parametrize(
    ("typed", "meant"), [("fitt", "fit"), ("reproduc", "reproduce"), ("exprot", "export")]
)
def test_a_misspelt_verb_is_answered(typed, meant):
    done = subprocess.run([sys.executable, "-m", "drgrade", typed], capture_output=True, text=True)
    assert done.returncode == 2 and f"did you mean {meant}" in done.stderr


def private_attributes(tree: ast.AST) -> set[str]:
    """``_name`` attributes read anywhere in a module (not dunders)."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    }


def defined_names(tree: ast.AST) -> set[str]:
    """Names a module defines: functions, classes, and attributes it assigns."""
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names |= {t.attr for t in targets if isinstance(t, ast.Attribute)}
    return names


def test_no_private_name_of_a_dependency_but_the_listed_ones():
    """LightningCLI's internals (_add_subcommands, _run_subcommand, _parse_ckpt_path, ...) stay unused."""
    trees = [ast.parse(p.read_text()) for p in (ROOT / "drgrade").rglob("*.py")]
    ours = set().union(*(defined_names(t) for t in trees))
    public = {"_fields", "_asdict", "_replace", "_make"}  # namedtuple's documented API
    foreign = set().union(*(private_attributes(t) for t in trees)) - ours - public
    assert foreign == {name.split(".")[-1] for name in PRIVATE_NAMES}, foreign
