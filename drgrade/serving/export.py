"""``drgrade export``: a trained task as an ONNX graph, normalised images -> the decision rule's outputs.

The graph is the task's logits followed by its ``DecisionRule`` (temperature, thresholds, the
referable operating cut, the uncertainty cut), traced from the very module that decides in
PyTorch, so a deployment cannot forget or re-implement any of it. Its outputs are the rule's
(``probabilities``, ``grade``, ``p_referable``, ``referable_by_grade``, ``referable_by_score``,
``uncertainty``, ``refer_to_grader``), then, for a model with a fitted typicality check,
``distance``: the Mahalanobis distance of the input's pooled embedding from the training
photographs' (its cut is in the metadata, ``typicality``). Preprocessing (fundus crop, resize,
normalisation) stays outside the graph: the runner does it with OpenCV and NumPy; the input
size, normalisation constants and the rule's description travel in the model's metadata.
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

from drgrade.decision.outputs import DISTANCE, OUTPUT_NAMES
from drgrade.files import atomic_open
from drgrade.grades import GRADE_NAMES
from drgrade.tasks.base import AugmentedLogits, BaseTask

OPSET = 17


class _Embedding(nn.Module):
    """images -> the task's pooled embedding (a module, so tracing finds the task's weights)."""

    def __init__(self, task: BaseTask):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.task.embedding(images)


class ExportGraph(nn.Module):
    """images -> the decision rule's outputs (and the typicality distance, when fitted)."""

    def __init__(self, task: BaseTask):
        super().__init__()
        tta = task.hparams.tta
        self.logits = task.export_module() if tta == "none" else AugmentedLogits(task.export_module(), tta)
        self.rule = task.rule
        fitted = task.typicality.fitted
        self.typicality = task.typicality if fitted else None
        self.embedding = _Embedding(task) if fitted else None

    def output_names(self) -> list[str]:
        """The graph's output names: the rule's, then ``distance`` when the check is fitted."""
        return [*OUTPUT_NAMES, *([DISTANCE] if self.typicality is not None else [])]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rule's outputs (``RuleOutput`` order) for normalised images, then the distance."""
        outputs = tuple(self.rule(self.logits(images)))
        if self.typicality is None:
            return outputs
        return (*outputs, self.typicality(self.embedding(images)))


def metadata(task: BaseTask, image_size: int, mean: tuple, std: tuple, origin: str = "") -> dict[str, str]:
    """What the runner needs beside the graph: input size, normalisation, grade names, the rule."""
    return {
        "drgrade_model": type(task).__name__,
        "model_name": task.display_name,
        "checkpoint": origin,
        "image_size": str(image_size),
        "mean": json.dumps(list(mean)),
        "std": json.dumps(list(std)),
        "grade_names": json.dumps(GRADE_NAMES),
        "decision_rule": json.dumps(task.rule.describe()),
        "typicality": json.dumps(task.typicality.describe()),
    }


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

    The file is written beside ``out`` and renamed over it once complete, so an interrupted
    export never leaves a broken model where a good one was.
    """
    out = Path(out)
    graph = ExportGraph(task.eval()).eval()
    example = torch.randn(2, 3, image_size, image_size)
    axes = {name: {0: "batch"} for name in ("image", *graph.output_names())}
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
                output_names=graph.output_names(),
                dynamic_axes=axes,
            )
        model = onnx.load(str(traced))
    mean, std = task.normalisation()
    entries = metadata(task, image_size, mean, std, origin)
    entries |= {"model_card": json.dumps(card)} if card else {}
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    with atomic_open(out, "wb") as f:
        f.write(model.SerializeToString())
    return out
