"""``drgrade export``: a trained task as an ONNX graph, normalised images -> probabilities, grade.

The graph includes the validation temperature and the decision rule with the checkpoint's
calibrated thresholds (argmax of p_k / t_k), so a deployment cannot forget them; the referral
operating points and the uncertainty cut travel in the metadata, where the runner reads them.
Preprocessing (fundus crop, resize, CLIP normalisation) stays outside the graph:
``drgrade.deploy`` does it with OpenCV and NumPy, and the input size and normalisation
constants travel in the model's metadata.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch
from torch import nn

from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD
from drgrade.evaluation.clinical import OPERATING_POINTS
from drgrade.grades import GRADE_NAMES, NUM_GRADES
from drgrade.tasks.base import BaseTask

OPSET = 17


class ProbabilityGraph(nn.Module):
    """images -> (probabilities [B, 5], grade [B]) with the task's decision rule baked in."""

    def __init__(self, task: BaseTask):
        super().__init__()
        self.logits = task.export_module()
        thresholds = task.thresholds if bool(task.calibrated) else torch.full((NUM_GRADES,), 1.0 / NUM_GRADES)
        self.register_buffer("thresholds", thresholds.detach().float().clone())
        self.register_buffer("temperature", task.temperature.detach().float().clone())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (probabilities, grade) of normalised images."""
        probabilities = (self.logits(images).float() / self.temperature).softmax(dim=1)
        grade = (probabilities / self.thresholds.clamp_min(1e-6)).argmax(dim=1)
        return probabilities, grade


def export_onnx(task: BaseTask, out: str | Path, image_size: int) -> Path:
    """Write ``task`` as ONNX to ``out`` (dynamic batch) with drgrade metadata; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    graph = ProbabilityGraph(task.eval()).eval()
    example = torch.randn(2, 3, image_size, image_size)
    # TracerWarnings flag Python-side shape arithmetic in open_clip's attention pool; the graph is
    # checked against PyTorch at other batch sizes (tests), so they carry nothing to act on
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            (example,),
            str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["probabilities", "grade"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}, "grade": {0: "batch"}},
        )
    model = onnx.load(str(out))
    rule = task.referral_rule()
    metadata = {
        "drgrade_model": type(task).__name__,
        "image_size": str(image_size),
        "mean": json.dumps(CLIP_MEAN),
        "std": json.dumps(CLIP_STD),
        "grade_names": json.dumps(GRADE_NAMES),
        "thresholds": json.dumps(graph.thresholds.tolist()),
        "temperature": json.dumps(float(task.temperature)),
        "operating_points": json.dumps(
            [
                {"score": score, "target": kind, "cut": cut}
                for (score, kind), cut in zip(OPERATING_POINTS, task.operating_cuts.tolist(), strict=True)
                if math.isfinite(cut)
            ]
        ),
        "referral_rule": json.dumps(asdict(rule) | {"uncertainty_cutoff": str(rule.uncertainty_cutoff)}),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out
