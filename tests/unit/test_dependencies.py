"""Dependencies are honest: every package drgrade imports is declared, none of them only in the dev extra.

(A runtime module importing scikit-image, a dev-only package, is caught here: ``skimage`` maps
to a distribution declared in ``dev`` alone.)
"""

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(*groups: str) -> set[str]:
    """Distribution names the core dependencies and the named extras declare."""
    entries = list(PROJECT["dependencies"])
    for group in groups:
        entries += PROJECT["optional-dependencies"][group]
    return {canonicalize_name(Requirement(entry).name) for entry in entries}


def imported_top_level_modules() -> set[str]:
    """Top-level names of every absolute import in drgrade's source (lazy imports included)."""
    names = set()
    for path in (ROOT / "drgrade").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"drgrade"}


def test_every_package_drgrade_imports_is_declared_outside_the_dev_extra():
    runtime = declared(*(group for group in PROJECT["optional-dependencies"] if group != "dev"))
    providers = packages_distributions()
    undeclared = {
        module: providers.get(module)
        for module in imported_top_level_modules()
        if not {canonicalize_name(d) for d in providers.get(module, [module])} & runtime
    }
    assert undeclared == {}
