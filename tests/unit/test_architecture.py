"""The package's shape: every shipped config instantiates, no import circles, short functions."""

import ast
from pathlib import Path

import pytest

from drgrade.commands.lightning import DRGradeCLI
from drgrade.tasks import BaseTask
from tests.conftest import ROOT, TINY

PACKAGE = ROOT / "drgrade"
MODEL_CONFIGS = [
    "zero_shot",
    "fcn_clip",
    "fcn_clip_finetune",
    "ranking",
    "ensemble",
    "quality",
    "cnn_baseline",
]


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.parametrize("overlay", [[], ["demo.yaml"], ["demo.yaml", "demo_train.yaml"]])
def test_every_config_instantiates(name, overlay, tmp_path):
    if name in ("ensemble", "cnn_baseline") and overlay:
        pytest.skip("the demo overlays set CLIP backbone options; this model has none")
    if name in ("zero_shot",) and "demo_train.yaml" in overlay:
        pytest.skip("zero-shot trains nothing, so it takes no training options")
    args = ["--config", str(ROOT / "configs" / f"{name}.yaml")]
    args += [a for o in overlay for a in ("--config", str(ROOT / "configs" / o))]
    if not overlay and name == "cnn_baseline":  # ImageNet weights cannot be downloaded here
        args += ["--model.init_args.pretrained", "null"]
    elif not overlay:  # RN50 openai weights cannot be downloaded here: same config, tiny backbone
        args += ["--config", str(TINY)] if name != "ensemble" else []
    args += ["--data.synthesize_if_missing", "false", "--trainer.default_root_dir", str(tmp_path)]
    if name == "ensemble":
        args += ["--model.init_args.checkpoints", "[a.ckpt]"]
    cli = DRGradeCLI(args, run=False)
    assert isinstance(cli.model, BaseTask) and cli.trainer.default_root_dir == str(tmp_path)
    assert cli.datamodule.hparams.image_size == cli.model.hparams.image_size


def test_every_config_file_is_covered():
    shipped = {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    assert shipped == {*MODEL_CONFIGS, "demo", "demo_train", "data", "trainer"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """drgrade modules imported anywhere in ``path`` (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drgrade"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("drgrade"))
    return found


def test_no_import_circle():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }
    # a package's __init__ importing its own submodules is how packages work, not a circle
    graph = {n: {m for m in deps if not m.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_no_function_over_50_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 50
    ]
    assert not long, long


#: Development notes that live beside the repository, not in it (spelled so as not to cite them).
NOTES_OUTSIDE = ("/".join(["..", "shared"]), "DESIGN" + ".md")


def test_no_reference_to_notes_outside_the_repository():
    offenders = [
        p
        for folder in ("drgrade", "tests", "benchmarks", "configs")
        for p in (ROOT / folder).rglob("*")
        if p.is_file()
        and p.suffix in (".py", ".yaml", ".md")
        and p != Path(__file__)
        and any(note in p.read_text() for note in NOTES_OUTSIDE)
    ]
    assert not offenders


def test_every_error_class_and_shared_constant_is_defined_once():
    """An error or constant declared twice drifts apart (a second SplitMismatchError was not caught
    by ``except errors.SplitMismatchError``; two ``UNKNOWN`` could differ)."""
    places: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id in ("UNKNOWN",)]
            else:
                continue
            for name in names:
                places.setdefault(name, []).append(str(path.relative_to(ROOT)))
    twice = {name: where for name, where in places.items() if len(where) > 1}
    assert not twice, twice


def test_one_way_to_find_the_closest_names():
    """A typo gets the same kind of answer everywhere: only ``drgrade.suggest`` measures similarity."""
    users = sorted(
        str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "difflib" in p.read_text(encoding="utf-8")
    )
    assert users == ["drgrade/suggest.py"]
