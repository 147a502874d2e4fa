"""``drgrade``: the command line.

``main(argv=None)`` is the single entry point of the console script, ``python -m drgrade`` and the
tests, so what the tests exercise is exactly what users run. It imports nothing heavy: the verb
table (``drgrade.commands.VERBS``) gives ``drgrade --help`` at once, and a verb's module (with
torch, Lightning, onnx or gradio) is imported only when that verb runs.

Errors a user can fix (``drgrade.errors.DrgradeError``) are shown as one message, exit code 2; a
misspelt option is answered with the closest valid names; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
import re
import sys
from argparse import ArgumentError
from collections.abc import Iterator
from pathlib import Path

from drgrade import CONFIGS, __version__
from drgrade.commands import CLOSED_OPTIONS, VERBS, Verb
from drgrade.commands.help_cache import print_help, remembered_options, wants_help, warm
from drgrade.console import printable_names, quiet_console
from drgrade.errors import DrgradeError, MissingExtraError
from drgrade.suggest import did_you_mean, option_is_known

#: The packages each optional extra brings (a verb failing to import one of them names its extra).
EXTRAS = {"deploy": ("onnx", "onnxruntime"), "app": ("gradio",), "flair": ("transformers", "tokenizers")}
HEADER = (
    "drgrade: grade diabetic retinopathy on colour fundus photographs with CLIP-based models "
    "(zero-shot CLIP, FCN-CLIP, ranking-aware prompting, their ensemble), with PyTorch Lightning."
)


def overview() -> str:
    """``drgrade --help``: what drgrade is, every verb with its full description, where to go next."""
    width = max(map(len, VERBS))
    verbs = "\n".join(f"  {name.ljust(width)}  {verb.summary}" for name, verb in VERBS.items())
    return (
        f"{HEADER}\n\nusage: drgrade VERB [options]   (drgrade VERB --help lists a verb's options)\n\n"
        f"verbs:\n{verbs}\n\nexamples:\n"
        "  drgrade fit --config configs/fcn_clip.yaml\n"
        "  drgrade test --config configs/fcn_clip.yaml --ckpt_path best\n"
        "  drgrade reproduce --demo --paper\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Run ``drgrade`` with ``argv`` (default: the process's arguments); user errors exit 2.

    Args:
        argv: command-line arguments without the program name.
    """
    quiet_console()
    printable_names()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        raise SystemExit(0 if args else 2)
    if args[0] in ("-V", "--version"):
        print(f"drgrade {__version__}")
        raise SystemExit(0)
    name, rest = args[0], args[1:]
    verb = VERBS.get(name)
    try:
        if verb is None:
            hint = did_you_mean(name, VERBS, otherwise=f"; choose from {', '.join(VERBS)}")
            raise DrgradeError(f"{name!r} is not a drgrade verb{hint}")
        rest = resolve_config_paths(rest)
        if wants_help(rest):  # remembered per installation: torch and Lightning are not imported for it
            print_help(name, lambda: run_verb(name, verb, rest), lambda: known_options(name, verb))
        refuse_misspelt_options(name, rest)
        run_verb(name, verb, rest)
    except KeyboardInterrupt:
        print(f"\ndrgrade {name}: interrupted. {resume_hint(name)}", file=sys.stderr)
        raise SystemExit(130) from None
    except ArgumentError as error:
        print(f"drgrade {name}: {explain_parse_error(error, name, verb, rest)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        print(f"drgrade {name}: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def keep_help() -> None:
    """Keep every verb's ``--help`` text for this installation, so the first call answers at once.

    ``make install`` runs it (``python -c "from drgrade.cli import keep_help; keep_help()"``);
    after a ``pip install``, run that line once.
    """
    warm(
        VERBS,
        lambda name: run_verb(name, VERBS[name], ["--help"]),
        lambda name: known_options(name, VERBS[name]),
    )


def refuse_misspelt_options(name: str, args: list[str]) -> None:
    """Refuse an option the verb does not take, from the names this installation remembered.

    Answered before torch loads (a second, not the seconds the live parser takes). With no names
    remembered yet nothing is refused here (the live parser answers); nor are model options when
    a model class outside drgrade is named, whose options are its own.
    """
    known = remembered_options(name)
    if known is None:
        return
    own_model = names_own_model(args)
    unknown = [
        option
        for option in (arg.partition("=")[0] for arg in args)
        if option.startswith("--")
        and option != "--"
        and not (own_model and option.startswith("--model"))
        and not option_is_known(option, known, closed=CLOSED_OPTIONS)
    ]
    if unknown:
        print(f"drgrade {name}: {unknown_option_lines(name, unknown, known)}", file=sys.stderr)
        raise SystemExit(2)


def given(args: list[str]) -> Iterator[tuple[str, str]]:
    """Each ``--option`` on a command line with its value (``--name value`` or ``--name=value``)."""
    for i, arg in enumerate(args):
        option, has_value, value = arg.partition("=")
        if option.startswith("--"):
            yield option, value if has_value else (args[i + 1] if i + 1 < len(args) else "")


def yaml_file(path: str) -> object:
    """A YAML file's contents; None when it cannot be read as YAML text (the parser says why later)."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def names_own_model(args: list[str]) -> bool:
    """Whether ``args`` name a model class outside drgrade (``--model``, ``--model.class_path``, a config)."""
    for option, value in given(args):
        if option in ("--model", "--model.class_path") and outside_drgrade(value):
            return True
        if option == "--config" and outside_drgrade(configured_model(value)):
            return True
    return False


def configured_model(config: str) -> str:
    """The model class a config file names ("" for none or an unreadable file; ? for a model file)."""
    contents = yaml_file(config)
    model = contents.get("model") if isinstance(contents, dict) else None
    if isinstance(model, dict):
        return str(model.get("class_path") or "")
    return "?" if model else ""  # a file of its own: any class


def outside_drgrade(class_path: str) -> bool:
    """Whether ``class_path`` names a class outside drgrade (a bare name is one of drgrade's tasks)."""
    return class_path == "?" or ("." in class_path and not class_path.startswith("drgrade."))


def resume_hint(verb: str) -> str:
    """What to run after an interruption (a ``fit`` resumes from its newest ``last.ckpt``)."""
    if verb == "fit":
        return (
            "To carry on where it stopped, run the same command with --ckpt_path last "
            "(the newest last.ckpt of this config's runs)."
        )
    return "Nothing was kept from this run; run the same command again."


def resolve_config_paths(args: list[str]) -> list[str]:
    """``args`` with each ``--config configs/NAME`` missing here read from the package's own configs.

    The shipped configs live inside the package (``drgrade.CONFIGS``), so ``--config
    configs/fcn_clip.yaml`` works from any folder, a checkout or not (a file of that name in the
    working folder comes first). Any other ``--config`` file that does not exist is refused,
    naming the closest file in its folder, before any verb is imported: a typo is answered in a
    second, not after the seconds torch and Lightning take to load.
    """
    resolved = list(args)
    for i, arg in enumerate(args):
        name, has_value, value = arg.partition("=")
        if name != "--config":
            continue
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) else ""
        shipped = packaged_config(value)
        if shipped is not None:
            resolved[i if has_value else i + 1] = f"--config={shipped}" if has_value else str(shipped)
            continue
        check_config_path(value)
    return resolved


def packaged_config(value: str):
    """The shipped file ``configs/NAME`` stands for, when no such file exists here (else None)."""
    path = Path(value)
    if path.is_file() or not path.parts or path.parts[0] != "configs":
        return None
    shipped = CONFIGS.joinpath(*path.parts[1:])
    return shipped if shipped.is_file() else None


def check_config_path(value: str) -> None:
    """Refuse a ``--config`` that is no readable YAML file; a missing one gets the closest names.

    A ``configs/...`` name also gets the closest shipped config.
    """
    path = Path(value)
    if value.lstrip().startswith(("{", "[")):  # inline YAML: the parser reads it
        return
    if path.is_file():
        check_config_text(value)
        return
    if path.exists() or not value:
        raise DrgradeError(f"--config {value or '(empty)'}: not a file; --config takes a YAML config file")
    folder = path.parent if path.parent.is_dir() else None
    names = sorted(str(folder / p.name) for p in folder.glob("*.y*ml")) if folder else []
    if path.parts and path.parts[0] == "configs":
        names += [f"configs/{p.name}" for p in sorted(CONFIGS.glob("*.yaml"))]
    hint = did_you_mean(str(path), sorted(set(names)))
    where = "" if folder or hint else f" (no folder {path.parent})"
    raise DrgradeError(f"--config {value}: no such file{where}{hint}")


def check_config_text(value: str) -> None:
    """Refuse a ``--config`` file that is not YAML text holding sections (model, data, trainer, ...)."""
    import yaml

    try:
        config = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DrgradeError(f"--config {value}: not a YAML text file ({first})") from None
    if config is not None and not isinstance(config, dict):
        raise DrgradeError(
            f"--config {value}: a config holds sections (model, data, trainer), not {type(config).__name__}"
        )


def run_verb(name: str, verb: Verb, args: list[str]) -> None:
    """Import the verb's module (naming the missing extra if it cannot) and run it."""
    try:
        module = importlib.import_module(verb.module)
    except ImportError as error:
        needed = next((extra for extra, names in EXTRAS.items() if error.name in names), None)
        if needed is None:
            raise
        raise MissingExtraError(
            f"drgrade {name} needs {error.name}, which is not installed: pip install 'drgrade[{needed}]'"
        ) from None
    if verb.kind == "lightning":
        module.run_lightning(name, args)
    elif verb.kind == "model":
        importlib.import_module("drgrade.commands.lightning").run_model_bound(module, args)
    else:
        run_plain(name, verb, module, args)


def run_plain(name: str, verb: Verb, module, args: list[str]) -> None:
    """Parse a plain verb's options and run it.

    A verb that runs other verbs (``reproduce``, with ``handed_on``) also gets the config options
    it hands on to them.
    """
    if hasattr(module, "handed_on"):
        own, handed = module.handed_on(args)
        module.run(parse_plain(name, verb, module, own), handed)
    else:
        module.run(parse_plain(name, verb, module, args))


def plain_parser(name: str, verb: Verb, module):
    """The parser of a verb with options of its own only."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog=f"drgrade {name}", description=verb.summary, allow_abbrev=False, exit_on_error=False
    )
    module.add_arguments(parser)
    return parser


def parse_plain(name: str, verb: Verb, module, args: list[str]):
    """The verb's options, parsed."""
    return plain_parser(name, verb, module).parse_args(args)


def user_error(error: BaseException) -> BaseException | None:
    """The drgrade error behind ``error`` (jsonargparse wraps a failing constructor's), or None for a bug."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, DrgradeError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def explain_parse_error(error: ArgumentError, name: str, verb: Verb | None, args: list[str]) -> str:
    """One or two lines for a parse error: the bad option, the config file setting it, the closest names."""
    text = str(error)
    # jsonargparse's wording differs between versions ("unrecognized" / "Unrecognized arguments",
    # "Option 'x' is not accepted" / "Key 'x' is not expected"): every version is answered alike
    listed = re.search(r"unrecognized arguments:(.*)", text, re.IGNORECASE | re.DOTALL)
    unknown = re.findall(r"(--[\w.\-]+)", listed.group(1)) if listed else []
    nested = re.search(r"(?:[Oo]ption|Key) '([\w.]+)' is not (?:accepted|expected)", text)
    if nested:
        unknown = [f"--model.init_args.{nested.group(1)}"]
    section = re.search(r"does not accept (?:option|nested key) '([\w.]+)'", text)  # a config file's key
    if section:
        unknown = [f"--{section.group(1)}"]
    if not unknown:
        detail = " ".join(line.strip() for line in text.splitlines()[:3])
        return f"error: {detail}\nsee: drgrade {name} --help"
    return unknown_option_lines(name, unknown, known_options(name, verb), args)


def unknown_option_lines(name: str, unknown: list[str], known: list[str], args: list[str] = ()) -> str:
    """One line per unknown option (two at most): the config file that sets it, the closest names."""
    lines = []
    for option in unknown:
        hint = did_you_mean(option.split("=")[0], known, otherwise=f"; see drgrade {name} --help")
        where = setting_file(option, args)
        lines.append(f"error: unknown option {option}{f' (set in {where})' if where else ''}{hint}")
    return "\n".join(lines[:2])


def setting_file(option: str, args: list[str]) -> str | None:
    """The ``--config`` file among ``args`` that sets ``option`` (``model.init_args.x`` or ``model.x``)."""
    keys = option.removeprefix("--").split(".")
    spellings = [keys, [k for k in keys if k != "init_args"]]
    for flag, value in given(args):
        if flag == "--config" and any(sets(yaml_file(value), spelling) for spelling in spellings):
            return value
    return None


def sets(config, keys: list[str]) -> bool:
    """Whether nested mapping ``config`` has the key path ``keys``."""
    for key in keys:
        if not isinstance(config, dict) or key not in config:
            return False
        config = config[key]
    return True


def known_options(name: str, verb: Verb | None) -> list[str]:
    """Every option a verb accepts (for suggestions), from the classes and parsers that define them."""
    if verb is None:
        return []
    module = importlib.import_module(verb.module)
    if verb.kind == "plain":
        defaults = plain_parser(name, verb, module).get_defaults()
        own = [f"--{key}" for key in defaults.keys()]  # noqa: SIM118 (a Namespace: keys() flattens --data.*)
        if "--data.roots" in own:  # its keys are the data sources
            own += [
                f"--data.{source.option}"
                for source in importlib.import_module("drgrade.data.sources").SOURCES.values()
            ]
        if hasattr(module, "handed_on"):  # reproduce: its stages' options too
            own += importlib.import_module("drgrade.commands.lightning").option_names()
        return own
    lightning = importlib.import_module("drgrade.commands.lightning")
    options = lightning.option_names()
    if verb.kind == "lightning":
        options += lightning.subcommand_options(name)
    if verb.kind == "model":
        from jsonargparse import ArgumentParser

        own = ArgumentParser()
        module.add_arguments(own)
        options += [f"--{key}" for key in own.get_defaults().keys()]  # noqa: SIM118 (a Namespace)
    return sorted(set(options))
