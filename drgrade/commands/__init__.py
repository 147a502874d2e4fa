"""drgrade's own verbs, subcommands of the one ``DRGradeCLI`` parser beside fit/validate/test/predict.

Each verb is a module with a one-line docstring (its help), ``MODEL_BOUND`` (whether it takes
the model, data and trainer options of a config), ``add_arguments(parser)`` and ``run(cli)``.
"""

from types import ModuleType

from drgrade.commands import cache, explain, export, report, reproduce, serve, synth

VERBS: dict[str, ModuleType] = {
    "synth": synth,
    "report": report,
    "reproduce": reproduce,
    "explain": explain,
    "cache": cache,
    "export": export,
    "serve": serve,
}
