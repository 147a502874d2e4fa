"""``drgrade VERB --help`` and a misspelt option answered at once: the live parser's, remembered.

A verb's help is what its real parser prints, and building that parser imports torch and
Lightning (seconds; tens of seconds on a loaded machine). The text depends only on drgrade's
source, the versions of the libraries that build the parser and the terminal width, so the
first ``drgrade VERB --help`` stores what the live parser printed in the user's cache folder
(``$DRGRADE_HELP_DIR``, else ``$XDG_CACHE_HOME/drgrade/help``, default ``~/.cache/drgrade/help``)
under a key made of all of those, and later calls print it without importing torch. Any change
in the key (an upgrade, an edited source file, another width) misses, and the live parser
answers and is stored again.

Only a bare ``drgrade VERB --help`` is served from the cache: with other options (``--config``)
the help can show other defaults, so the live parser answers.

The text is wrapped to the terminal's width up to ``MAX_WIDTH`` columns, so every terminal at
least that wide shares one text; ``make install`` (and so ``make demo`` / ``make test``) stores
every verb's text at that width ahead of time (``drgrade.cli.keep_help``), so
even the first ``drgrade VERB --help`` of an installation answers at once.

With the text, the verb's option names are kept (every option the help lists, and every model
option of every task): ``drgrade.cli`` refuses a misspelt option from them, with the closest
names, before torch is imported. Without them (nothing kept yet) the live parser refuses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from drgrade import __version__
from drgrade.errors import MissingExtraError, OutputError
from drgrade.files import atomic_write_text

HELP_FLAGS = ("-h", "--help")
#: Where the texts are kept, when not in the user's cache folder (the tests keep theirs apart).
ENV_HELP_DIR = "DRGRADE_HELP_DIR"
#: The distributions whose versions shape a verb's parser: its options, their types and help texts.
SHAPERS = ("lightning", "jsonargparse", "torch", "docstring-parser", "typeshed-client")
#: A key's length in hex digits, and the pattern of one (what ``remember`` may replace).
KEY_DIGITS = 32
KEY = f"[0-9a-f]{{{KEY_DIGITS}}}"
#: The widest text kept: wider terminals get this one (argparse wraps to ``$COLUMNS``).
MAX_WIDTH = 100
#: drgrade's own source (every option, docstring and verb summary the help shows comes from it).
PACKAGE = Path(__file__).resolve().parent.parent


def wants_help(args: list[str]) -> bool:
    """Whether ``args`` ask for the help alone (``--help`` or ``-h``, nothing else)."""
    return len(args) == 1 and args[0] in HELP_FLAGS


def help_dir() -> Path:
    """The folder of remembered help texts: ``$DRGRADE_HELP_DIR``, else ``$XDG_CACHE_HOME/drgrade/help``."""
    if os.environ.get(ENV_HELP_DIR):
        return Path(os.environ[ENV_HELP_DIR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drgrade" / "help"


def installed(name: str) -> str:
    """The installed version of distribution ``name`` (``-`` when it is not installed)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


@functools.cache
def installation() -> str:
    """What every verb's parser depends on, as a digest, computed once per process.

    drgrade's version and every byte of its source, the Python and the ``SHAPERS`` versions.
    """
    digest = hashlib.sha256()
    digest.update(f"{__version__}|{sys.version}".encode())
    for name in SHAPERS:
        digest.update(f"|{name}={installed(name)}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def help_key(verb: str) -> str:
    """What a verb's parser depends on: the verb and ``installation()``.

    A text's file name adds the width it was wrapped to.
    """
    return hashlib.sha256(f"{verb}|{installation()}".encode()).hexdigest()[:KEY_DIGITS]


def help_width() -> int:
    """The width help text is wrapped to here: ``$COLUMNS`` or the terminal's, at most ``MAX_WIDTH``.

    Printed to a pipe or a file (no terminal), the widest.
    """
    return min(shutil.get_terminal_size(fallback=(MAX_WIDTH, 24)).columns, MAX_WIDTH)


def help_file(verb: str) -> Path:
    """Where the help text of ``verb`` for this installation and width is remembered."""
    return help_dir() / f"{verb}-{help_width()}-{help_key(verb)}.txt"


def options_file(verb: str) -> Path:
    """Where the option names of ``verb`` for this installation are remembered."""
    return help_dir() / f"{verb}-options-{help_key(verb)}.json"


def remembered_options(verb: str) -> list[str] | None:
    """The option names ``verb`` takes in this installation, or None when none are kept yet."""
    try:
        names = json.loads(options_file(verb).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # a damaged file is not trusted (every help lists --help): the live parser answers instead
    good = isinstance(names, list) and all(isinstance(n, str) and n.startswith("--") for n in names)
    return names if good and "--help" in names else None


def options_in(text: str) -> set[str]:
    """The option names a help text lists (``--trainer.max_epochs``, ``--no_allow_untrained``)."""
    return set(re.findall(r"(?<![\w-])(--[A-Za-z][\w.\-]*\w)", text))


def live_help(run_live: Callable[[], None]) -> str:
    """What the live parser prints for ``--help`` (``run_live`` runs the verb with ``--help``)."""
    printed = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(help_width())  # argparse wraps to it
    try:
        with contextlib.redirect_stdout(printed):
            run_live()
    except SystemExit as done:
        if done.code not in (0, None):
            sys.stdout.write(printed.getvalue())
            raise
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return printed.getvalue()


def remember(path: Path, text: str, stale: str) -> None:
    """Keep ``text`` at ``path``, in place of the files ``stale`` matches whole (earlier keys).

    Only names drgrade writes are removed (``stale`` is a regular expression ending in the
    32-digit key), so a cache folder shared with other files loses none of them.
    """
    with contextlib.suppress(OSError, OutputError):  # an unwritable cache: the next call is live too
        for old in path.parent.iterdir() if path.parent.is_dir() else ():
            if re.fullmatch(stale, old.name) and old.is_file():
                old.unlink()
        atomic_write_text(path, text)


def remember_all(verb: str, text: str, known: Callable[[], list[str]]) -> None:
    """Keep a verb's live help ``text`` and its option names (those ``text`` lists and ``known()``)."""
    remember(help_file(verb), text, rf"{verb}-{help_width()}-{KEY}\.txt")
    names = sorted(options_in(text) | set(known()))
    remember(options_file(verb), json.dumps(names), rf"{verb}-options-{KEY}\.json")


def print_help(verb: str, run_live: Callable[[], None], known: Callable[[], list[str]]) -> None:
    """Print ``verb``'s help: remembered when this installation printed it before, else live (and kept).

    Args:
        verb: the verb.
        run_live: runs the verb with ``--help`` (its real parser prints the help and exits).
        known: the option names the verb takes beyond those its help lists (every task's).
    """
    try:
        text = help_file(verb).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = live_help(run_live)
        remember_all(verb, text, known)
    sys.stdout.write(text)
    raise SystemExit(0)


def warm(
    verbs: Mapping[str, object], run_live: Callable[[str], None], known: Callable[[str], list[str]]
) -> None:
    """Store every verb's help and option names for this installation, the text at ``MAX_WIDTH``.

    Run once after installing (``make install`` does, through ``drgrade.cli.keep_help``).

    Args:
        verbs: the verbs, by name.
        run_live: runs a verb with ``--help``; a ``MissingExtraError`` (an optional extra not
            installed) skips the verb, whose first help is then live.
        known: a verb's option names beyond those its help lists.
    """
    os.environ["COLUMNS"] = str(MAX_WIDTH)
    kept = []
    for name in verbs:
        if not (help_file(name).is_file() and options_file(name).is_file()):
            try:
                remember_all(name, live_help(partial(run_live, name)), partial(known, name))
            except MissingExtraError:
                continue
        kept.append(name)
    print(f"drgrade: the help of {len(kept)} of {len(verbs)} verbs is kept in {help_dir()}")
