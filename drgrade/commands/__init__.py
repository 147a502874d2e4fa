"""drgrade's verbs: what each does, how its options are read, and which optional extra it needs.

Three kinds of verb:

- ``lightning``: Lightning's own ``fit`` / ``validate`` / ``test`` / ``predict``, run by
  ``DRGradeCLI`` (a ``LightningCLI``) with the model, data and trainer of the config files;
- ``model``: drgrade's verbs that take the same config files (``explain``, ``cache``, ``export``):
  ``DRGradeCLI`` parses and instantiates them, then the verb's ``run(cli)`` works with the result;
- ``plain``: verbs with options of their own only (``synth``, ``report``, ``reproduce``,
  ``serve``, ``embed``, ``gate``): a plain jsonargparse parser, then ``run(options)``.

The table is read by ``drgrade --help`` without importing any verb (so the help is instant and
needs no optional dependency); a verb's module is imported only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    """One ``drgrade`` verb.

    Args:
        module: the module that implements it.
        summary: its description in ``drgrade --help``.
        kind: ``lightning``, ``model`` or ``plain`` (see the module docstring).
        extra: the optional dependency group it needs (``pip install 'drgrade[<extra>]'``).
    """

    module: str
    summary: str
    kind: str
    extra: str | None = None


#: Dict options whose keys are all listed among a verb's options (the data sources by registry
#: name: ``--data.roots.aptos2019``), so a misspelt key is refused like a misspelt option.
CLOSED_OPTIONS = ("--data.roots",)
LIGHTNING = "drgrade.commands.lightning"
VERBS: dict[str, Verb] = {
    "fit": Verb(
        LIGHTNING,
        "Train a model on the training split, fitting its decision rule on validation every epoch "
        "(a zero-shot model or an ensemble makes its validation choices instead); writes checkpoints.",
        "lightning",
    ),
    "validate": Verb(
        LIGHTNING, "Evaluate a checkpoint on the validation split and write its results.", "lightning"
    ),
    "test": Verb(
        LIGHTNING,
        "Evaluate a checkpoint on the test split: metrics with intervals, operating points, calibration "
        "and figures.",
        "lightning",
    ),
    "predict": Verb(
        LIGHTNING,
        "Grade a folder of photographs (or the test split) with a checkpoint; writes a CSV.",
        "lightning",
    ),
    "synth": Verb(
        "drgrade.commands.synth",
        "Write synthetic fundus photographs in the published layouts of APTOS 2019, Messidor-2, EyePACS, "
        "IDRiD and DDR.",
        "plain",
    ),
    "reproduce": Verb(
        "drgrade.commands.reproduce",
        "Run a protocol file, by default the paper's (zero-shot, FCN-CLIP, ranking, ensemble: fit then "
        "test), and write the report.",
        "plain",
    ),
    "report": Verb(
        "drgrade.commands.report",
        "Build Table 3, Table 4, the clinical tables and the figures from test run folders.",
        "plain",
    ),
    "gate": Verb(
        "drgrade.commands.gate",
        "Measure the quality gate against a dataset's own gradability labels: sensitivity and specificity "
        "for reject, per verdict, and a sheet of the misjudged photographs.",
        "plain",
    ),
    "embed": Verb(
        "drgrade.commands.embed",
        "Write a checkpoint's pooled image embeddings of a folder or a dataset's splits as Parquet "
        "(file, source, patient, grade, split, embedding).",
        "plain",
    ),
    "explain": Verb(
        "drgrade.commands.explain",
        "Draw where models look (CBAM attention, Grad-CAM) and measure how much of it falls on lesions.",
        "model",
    ),
    "cache": Verb(
        "drgrade.commands.cache",
        "Read every photograph of the configured data once ahead of training (quality gate, hashes, cache).",
        "model",
    ),
    "export": Verb(
        "drgrade.commands.export",
        "Export a checkpoint as an ONNX model with its decision rule inside (optionally INT8).",
        "model",
        "deploy",
    ),
    "serve": Verb(
        "drgrade.commands.serve",
        "Start the screening web page for a checkpoint or an exported ONNX model.",
        "plain",
        "app",
    ),
}
