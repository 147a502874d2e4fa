"""``drgrade export``: a trained task as an ONNX graph, normalised images -> the decision rule's outputs.

The graph is the task's logits followed by its ``DecisionRule`` (temperature, thresholds, the
referable operating cut, the uncertainty cut), traced from the very module that decides in
PyTorch, so a deployment cannot forget or re-implement any of it. Its outputs are the rule's
(``probabilities``, ``grade``, ``p_referable``, ``referable_by_grade``, ``referable_by_score``,
``uncertainty``, ``refer_to_grader``), then, for a model with a DME output, ``p_dme`` (P(DME)
of the input as given: DME has no test-time views; its validation cut is in the metadata,
``dme_cut``), then, for a model with a fitted typicality check, ``distance``: the Mahalanobis
distance of the input's pooled embedding from the training photographs' (its cut is in the
metadata, ``typicality``). A ``quality`` model is exported as a graph of its own
(``export_quality_onnx``): images -> P(good), P(usable), P(reject). Preprocessing (fundus crop,
resize, normalisation) stays outside the graph: the runner does it with OpenCV and NumPy; the
input size, normalisation constants and the rule's description travel in the model's metadata.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from drgrade.decision.gradability import LEVELS, QUALITY_OUTPUT
from drgrade.decision.outputs import DISTANCE, OUTPUT_NAMES, P_DME
from drgrade.files import atomic_open
from drgrade.grades import GRADE_NAMES
from drgrade.tasks.base import BaseTask
from drgrade.tasks.tta import augmented_logits

OPSET = 17


class _Embedding(nn.Module):
    """images -> the task's pooled embedding (a module, so tracing finds the task's weights)."""

    def __init__(self, task: BaseTask):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.task.embedding(images)


class ExportGraph(nn.Module):
    """images -> the decision rule's outputs (then P(DME) and the typicality distance, when there)."""

    def __init__(self, task: BaseTask):
        super().__init__()
        self.model = task.export_module()  # images -> logits, or (logits, DME logits)
        self.has_dme = task.has_dme
        self.tta = task.hparams.tta
        self.rule = task.rule
        fitted = task.typicality.fitted
        self.typicality = task.typicality if fitted else None
        self.embedding = _Embedding(task) if fitted else None

    def output_names(self) -> list[str]:
        """The graph's output names: the rule's, then ``p_dme`` and ``distance`` when there."""
        return [
            *OUTPUT_NAMES,
            *([P_DME] if self.has_dme else []),
            *([DISTANCE] if self.typicality is not None else []),
        ]

    def grade_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The grade logits of one view (a mirrored one for test-time augmentation)."""
        return self.model(images)[0] if self.has_dme else self.model(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rule's outputs (``RuleOutput`` order) for normalised images, then P(DME), the distance."""
        logits, dme = self.model(images) if self.has_dme else (self.model(images), None)
        outputs = tuple(self.rule(augmented_logits(self.grade_logits, images, self.tta, logits)))
        if dme is not None:
            outputs = (*outputs, torch.sigmoid(dme.float()))
        if self.typicality is not None:
            outputs = (*outputs, self.typicality(self.embedding(images)))
        return outputs


def input_metadata(task: BaseTask, image_size: int, origin: str = "") -> dict[str, str]:
    """What every drgrade graph carries: where it came from, its input size and normalisation."""
    mean, std = task.normalisation()
    return {
        "drgrade_model": type(task).__name__,
        "model_name": task.display_name,
        "checkpoint": origin,
        "image_size": str(image_size),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
    }


def metadata(task: BaseTask, image_size: int, origin: str = "") -> dict[str, str]:
    """What the runner needs beside the graph: input size, normalisation, grade names, rule, DME cut."""
    return (
        input_metadata(task, image_size, origin)
        | {
            "grade_names": json.dumps(GRADE_NAMES),
            "decision_rule": json.dumps(task.rule.describe()),
            "typicality": json.dumps(task.typicality.describe()),
        }
        | ({"dme_cut": json.dumps(task.dme_cut_value())} if task.has_dme else {})
    )


@contextlib.contextmanager
def attention_as_matmuls():
    """Trace attention as plain matrix products.

    PyTorch's fused inference kernel for ``nn.MultiheadAttention`` (a ViT's) has no ONNX form;
    the unfused path computes the same.
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def export_onnx(
    task: BaseTask, out: str | Path, image_size: int, card: dict | None = None, origin: str = ""
) -> Path:
    """Write ``task`` as ONNX to ``out`` (dynamic batch) with drgrade metadata; returns the path.

    ``card`` (``drgrade.serving.card.card_facts``) goes into the metadata as ``model_card``;
    ``origin`` names the checkpoint exported (``checkpoint_label``).
    """
    graph = ExportGraph(task.eval()).eval()
    entries = metadata(task, image_size, origin) | ({"model_card": json.dumps(card)} if card else {})
    return write_graph(graph, graph.output_names(), entries, out, image_size)


class QualityGraph(nn.Module):
    """images -> P(good), P(usable), P(reject): a quality model's softmax (``drgrade.tasks.quality``)."""

    def __init__(self, task: BaseTask):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The three levels' probabilities [B, 3] of normalised images."""
        return self.task(images).float().softmax(-1)


def export_quality_onnx(task: BaseTask, out: str | Path, image_size: int, origin: str = "") -> Path:
    """Write a ``quality`` task as its own ONNX graph, normalised images -> ``quality`` [B, 3].

    The runner gates with it beside the rule gate (``python -m drgrade.deploy --quality_onnx``);
    the metadata holds the input size, normalisation, the levels and the checkpoint it came from.
    """
    entries = input_metadata(task, image_size, origin) | {"quality_levels": json.dumps(list(LEVELS))}
    return write_graph(QualityGraph(task.eval()).eval(), [QUALITY_OUTPUT], entries, out, image_size)


def write_graph(
    graph: nn.Module, outputs: list[str], entries: dict, out: str | Path, image_size: int
) -> Path:
    """Trace ``graph`` (input ``image``, dynamic batch), add the metadata ``entries``, write it to ``out``.

    The file is written beside ``out`` and renamed over it once complete, so an interrupted
    export never leaves a broken model where a good one was.
    """
    out = Path(out)
    example = torch.randn(2, 3, image_size, image_size)
    axes = {name: {0: "batch"} for name in ("image", *outputs)}
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.is_dir() else None) as work:
        traced = Path(work) / "graph.onnx"
        # TracerWarnings flag Python-side shape arithmetic in open_clip's attention pool; the graph is
        # checked against PyTorch at other batch sizes (tests), so they carry nothing to act on
        with torch.no_grad(), warnings.catch_warnings(), attention_as_matmuls():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # the TorchScript-based exporter is chosen on purpose (dynamo=False): it needs no onnxscript,
            # and its graph is checked against PyTorch's outputs in the tests
            warnings.filterwarnings(
                "ignore", message="You are using the legacy TorchScript-based ONNX export"
            )
            warnings.filterwarnings(
                "ignore", message="The feature will be removed", category=DeprecationWarning
            )
            torch.onnx.export(
                graph,
                (example,),
                str(traced),
                dynamo=False,
                opset_version=OPSET,
                input_names=["image"],
                output_names=outputs,
                dynamic_axes=axes,
            )
        model = onnx.load(str(traced))
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    with atomic_open(out, "wb") as f:
        f.write(model.SerializeToString())
    return out
