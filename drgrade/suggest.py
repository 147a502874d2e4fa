"""Finding "did you mean ...?": the one way drgrade finds the names nearest a misspelt one.

Verbs, options, config files, data sources, protocol keys and timm architectures are all
answered by the same measure (difflib's similarity ratio), so a typo gets the same kind of
answer wherever it is made.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

#: How similar (difflib ratio, 0 to 1) a name must be to be offered at all.
CUTOFF = 0.6
#: Names offered besides the nearest must be about as near as it (within this much).
MARGIN = 0.05


def closest(word: str, names: Iterable[str], n: int = 3) -> list[str]:
    """The names nearest ``word``: up to ``n``, only those about as near as the nearest one."""
    ratio = difflib.SequenceMatcher
    scored = sorted(((ratio(None, word, name).ratio(), name) for name in names), reverse=True)
    best = scored[0][0] if scored else 0.0
    return [name for score, name in scored[:n] if score >= max(CUTOFF, best - MARGIN)]


def did_you_mean(
    word: str, names: Iterable[str], otherwise: str = "", show: Callable[[str], str] = str, n: int = 3
) -> str:
    """``"; did you mean A or B?"`` for the names nearest ``word``, else ``otherwise``.

    Args:
        word: what was typed.
        names: the valid names.
        otherwise: the hint when no name is near (e.g. "; see drgrade fit --help").
        show: how each name is written (``repr`` quotes it).
        n: at most this many names.
    """
    close = closest(word, names, n)
    return f"; did you mean {' or '.join(map(show, close))}?" if close else otherwise


def option_is_known(name: str, known: Iterable[str], closed: Iterable[str] = ()) -> bool:
    """Whether option ``name`` is one of ``known``, read as drgrade's parsers read it.

    ``--model.lr`` is ``--model.init_args.lr``; a key under a listed option is that option's
    (``--trainer.logger.init_args.project``; never under a bare section such as ``--model``),
    except under a ``closed`` option whose keys ``known`` lists (``--data.roots.aptos2019``);
    ``--trainer.callbacks+`` appends to ``--trainer.callbacks`` and ``--model.help`` asks for a
    class's options.
    """
    known = set(known)
    name = name.removesuffix("+").removesuffix(".help")
    if name.startswith("--model.") and not name.startswith(("--model.init_args.", "--model.class_path")):
        name = "--model.init_args." + name.removeprefix("--model.")
    if name in known:
        return True
    parts = name.split(".")
    prefixes = [".".join(parts[:n]) for n in range(len(parts) - 1, 1, -1)]
    listed = {p for p in closed if any(k.startswith(p + ".") for k in known)}  # closed, keys known
    return any(p in known and p not in listed for p in prefixes)
