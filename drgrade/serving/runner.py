"""Grade fundus images with an exported ONNX model and onnxruntime alone (no torch, no Lightning).

    python -m drgrade.deploy model.onnx images/ --out predictions.csv

Preprocessing matches training exactly: the same fundus crop and resize code, then the
normalisation stored in the model's metadata. The graph's outputs are the decision rule's (the
rule is inside the graph), and P(DME) for a model with a DME output (its cut in the metadata);
each is checked before it is written. ``--quality_onnx`` adds the learned gate (an exported
quality model, ``OnnxQualityModel``), asked as ``predict`` asks it.

An ONNX file is data too: before a session is created the file's size, its operators (only those
``drgrade export`` writes, however deeply nested; no control flow and no model-local functions,
so a hostile graph cannot loop forever), the size of every tensor it would make for one image
(from shape inference), its inputs and outputs and its metadata (input size 32..2048 and equal to
the graph's, positive standard deviations, the grade names, a sane decision rule) are checked,
and a file that fails is refused naming the problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tqdm import tqdm

from drgrade.console import printable_names
from drgrade.data.images import list_images
from drgrade.data.intake import judge, take_in
from drgrade.data.preprocess import preprocess_fundus, resize_square
from drgrade.decision.checks import rule_problems
from drgrade.decision.gradability import LEVELS, QUALITY_OUTPUT, learned_verdict, model_name
from drgrade.decision.outputs import ATYPICAL, DISTANCE, OUTPUT_NAMES, P_DME
from drgrade.errors import DrgradeError, ModelFileError, OptionError
from drgrade.exams import exam_ids, exam_summary, exams_path, write_exams
from drgrade.files import check_writable
from drgrade.grades import GRADE_NAMES, NUM_GRADES
from drgrade.predictions import (
    PredictionRow,
    checked_decisions,
    decided_row,
    operating_cut,
    ungradable_summary,
    write_predictions,
)

#: The operators ``drgrade export`` writes (float and INT8, every task and backbone); nothing else runs.
# fmt: off
ALLOWED_OPS = frozenset(
    {
        "Abs", "Add", "And", "ArgMax", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat",
        "Constant", "ConstantOfShape", "Conv", "ConvInteger", "DequantizeLinear", "Div",
        "DynamicQuantizeLinear", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gather", "GatherElements",
        "Gemm", "GlobalAveragePool", "Greater", "GreaterOrEqual", "Identity", "IsInf", "IsNaN",
        "LayerNormalization", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "MatMulInteger", "Max",
        "MaxPool", "Mean", "Min", "Mod", "Mul", "Neg", "Not", "Or", "Pad", "Pow", "QLinearConv",
        "QLinearMatMul", "QuantizeLinear", "Range", "Reciprocal", "ReduceL2", "ReduceMax", "ReduceMean",
        "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt",
        "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where",
    }
)
# fmt: on
#: Largest model file accepted (RN50 is ~100 MB in float, ViT-L/14 ~1.2 GB).
MAX_MODEL_BYTES = 2 << 30
IMAGE_SIZES = (32, 2048)


#: Operators that make a tensor from values alone (a ConstantOfShape can ask for 32 GB from a
#: 2 KB file): their output must have a size known before running. Operators that grow an input
#: (Expand, Pad, Resize) are bounded whenever shape inference knows their size; drgrade's own ViT
#: exports have an Expand whose size it cannot follow, so an unknown one is not refused.
SIZING_OPS = frozenset({"ConstantOfShape", "Range"})
#: Most elements any one tensor may have for one image (4 GiB of float32).
MAX_ELEMENTS = 1 << 30
#: Node domains ``drgrade export`` writes (the standard operator set).
DOMAINS = frozenset({"", "ai.onnx"})
#: The outputs a graph may have after the rule's, in this order: P(DME), the typicality distance.
EXTRA_OUTPUTS = ([], [P_DME], [DISTANCE], [P_DME, DISTANCE])
#: Longest metadata entry read (a decision rule is a few kilobytes).
MAX_METADATA = 1 << 20


def all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    """Every node of ``graph`` and of the subgraphs its nodes carry, however deep."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield from all_nodes(sub)


def graph_problems(model: onnx.ModelProto) -> list[str]:
    """``node_problems`` and outputs that are not a grading model's (the decision rule's)."""
    problems = node_problems(model)
    outputs = [o.name for o in model.graph.output]
    if outputs == [QUALITY_OUTPUT]:
        problems.append("it is a quality model: pass it as --quality_onnx, beside a grading model")
    elif (
        tuple(outputs[: len(OUTPUT_NAMES)]) != OUTPUT_NAMES
        or outputs[len(OUTPUT_NAMES) :] not in EXTRA_OUTPUTS
    ):
        problems.append(
            f"outputs {outputs}, not {list(OUTPUT_NAMES)} (and optionally {P_DME!r}, then {DISTANCE!r})"
        )
    else:
        dims = model.graph.output[0].type.tensor_type.shape.dim
        if len(dims) != 2 or dims[1].dim_value != NUM_GRADES:
            problems.append(f"probabilities are not [batch, {NUM_GRADES}]")
    return problems


def node_problems(model: onnx.ModelProto) -> list[str]:
    """Operators outside ``ALLOWED_OPS`` (control flow included) and an input that is not ``image``.

    Every node counts, however it is reached: nested in a subgraph attribute, or through a
    model-local function (refused outright: ``drgrade export`` writes none).
    """
    nodes = list(all_nodes(model.graph))
    ops = {node.op_type for node in nodes}
    problems = [f"operators drgrade does not write: {sorted(ops - ALLOWED_OPS)}"] if ops - ALLOWED_OPS else []
    domains = {node.domain for node in nodes} - DOMAINS
    if domains:
        problems.append(f"operator domains drgrade does not write: {sorted(domains)}")
    if model.functions:
        names = sorted(f"{f.domain}.{f.name}" for f in model.functions)[:5]
        problems.append(f"model-local functions, which drgrade does not write: {names}")
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if inputs != ["image"]:
        problems.append(f"inputs {inputs}, not ['image']")
    return problems


def input_problems(model: onnx.ModelProto, size: int) -> list[str]:
    """An image input whose fixed sides disagree with the metadata's ``image_size``."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    sides = [d.dim_value for d in dims[2:] if d.HasField("dim_value")]
    if len(dims) != 4 or any(side != size for side in sides):
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        return [f"its image input is {shape}, but its metadata says image_size {size}"]
    return []


def size_problems(model: onnx.ModelProto) -> list[str]:
    """Tensors that would be too large for one image, from shape inference before anything runs.

    The batch is fixed to one image and ONNX's shape inference propagates constant values, so a
    size computed from constants or from the image's shape is known and bounded; a ``SIZING_OPS``
    output whose size stays unknown is refused too, as what it would allocate cannot be told.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception as error:  # onnx raises its own types for inconsistent graphs
        return [f"its tensor shapes cannot be inferred ({str(error).splitlines()[0][:120]})"]
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    problems = []
    for node in inferred.graph.node:
        for name in node.output:
            shape = shapes.get(name)
            known = shape is not None and None not in shape
            if known and int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
                problems.append(f"{node.op_type} output {name!r} of shape {shape} (over {MAX_ELEMENTS:,})")
            elif not known and node.op_type in SIZING_OPS:
                problems.append(f"{node.op_type} output {name!r} has a size unknown before running")
    return problems[:3]


def _floats(
    meta: dict, key: str, count: int, low: float, high: float, strict_low: bool = False
) -> list[float]:
    values = json.loads(meta[key])
    ok = isinstance(values, list) and len(values) == count and all(isinstance(v, int | float) for v in values)
    if not ok or not all((v > low if strict_low else v >= low) and v <= high for v in values):
        raise ValueError(
            f"{key} {meta[key][:80]} is not {count} numbers in {'(' if strict_low else '['}{low}, {high}]"
        )
    return [float(v) for v in values]


def refuse_long(meta: dict[str, str]) -> None:
    """``ValueError`` naming the first metadata entry longer than ``MAX_METADATA``."""
    long = [k for k, v in meta.items() if len(v) > MAX_METADATA]
    if long:
        raise ValueError(f"metadata {long[0]} is over {MAX_METADATA:,} characters")


def read_metadata(meta: dict[str, str]) -> dict:
    """The model's metadata, checked with bounds (``ValueError`` naming the entry otherwise)."""
    missing = [k for k in ("image_size", "mean", "std", "grade_names", "decision_rule") if k not in meta]
    refuse_long(meta)
    if missing:
        raise ValueError(
            f"no drgrade metadata ({', '.join(missing)} missing): not written by `drgrade export`"
        )
    if json.loads(meta["grade_names"]) != list(GRADE_NAMES):
        raise ValueError(f"grade_names {meta['grade_names'][:120]} are not drgrade's {list(GRADE_NAMES)}")
    rule = json.loads(meta["decision_rule"])
    cuts = [float("nan") if p["cut"] is None else float(p["cut"]) for p in rule["operating_points"]]
    cutoff = float("inf") if rule["uncertainty_cutoff"] is None else float(rule["uncertainty_cutoff"])
    problems = rule_problems(float(rule["temperature"]), [float(t) for t in rule["thresholds"]], cuts, cutoff)
    if problems:
        raise ValueError(f"its decision rule is broken ({'; '.join(problems)})")
    return input_metadata(meta) | {
        "typicality_cut": typicality_cut(meta),
        "dme_cut": dme_cut(meta),
        "rule": rule,
        # where the graph came from, for the prediction file's model and checkpoint columns
        "model": meta.get("model_name", meta.get("drgrade_model", ""))[:100],
        "checkpoint": meta.get("checkpoint", "")[:200],
        "card": json.loads(meta["model_card"]) if "model_card" in meta else None,
    }


def input_metadata(meta: dict[str, str]) -> dict:
    """The input size and normalisation of any drgrade graph, checked with bounds (``ValueError``)."""
    size = int(meta["image_size"])
    if not IMAGE_SIZES[0] <= size <= IMAGE_SIZES[1]:
        raise ValueError(f"image_size {size} is outside {IMAGE_SIZES[0]}..{IMAGE_SIZES[1]}")
    return {
        "image_size": size,
        "mean": _floats(meta, "mean", 3, 0.0, 1.0),
        "std": _floats(meta, "std", 3, 0.0, 1.0, strict_low=True),
    }


def typicality_cut(meta: dict[str, str]) -> float | None:
    """The typicality check's cut from the metadata (None: the model has no fitted check)."""
    described = json.loads(meta.get("typicality", "null")) or {}
    cut = described.get("cut") if described.get("fitted") else None
    if cut is None:
        return None
    if not isinstance(cut, int | float) or not 0 < cut < float("inf"):
        raise ValueError(f"typicality cut {cut!r} is not a positive finite number")
    return float(cut)


def dme_cut(meta: dict[str, str]) -> float | None:
    """The validation cut on P(DME) from the metadata (None: no DME output, or no cut was fitted)."""
    cut = json.loads(meta.get("dme_cut", "null"))
    if cut is None:
        return None
    if not isinstance(cut, int | float) or not 0 <= cut <= 1:
        raise ValueError(f"dme_cut {cut!r} is not a probability")
    return float(cut)


def dme_problems(model: onnx.ModelProto, meta: dict[str, str]) -> list[str]:
    """A ``p_dme`` output without a ``dme_cut`` metadata entry (null when unfitted), or the reverse."""
    if ("dme_cut" in meta) == (P_DME in [o.name for o in model.graph.output]):
        return []
    return [f"its dme_cut metadata and its {P_DME!r} output do not come together"]


def typicality_problems(model: onnx.ModelProto, cut: float | None) -> list[str]:
    """A ``distance`` output without a typicality cut in the metadata, or a cut without the output."""
    if (cut is not None) == (DISTANCE in [o.name for o in model.graph.output]):
        return []
    return [f"its typicality cut and its {DISTANCE!r} output do not come together"]


def grader_checks(proto: onnx.ModelProto) -> dict:
    """A grading model's checked metadata; ``ValueError`` naming the first problem found."""
    problems = graph_problems(proto)
    if problems:
        raise ValueError("; ".join(problems))
    meta = {p.key: p.value for p in proto.metadata_props}
    checked = read_metadata(meta)
    problems = input_problems(proto, checked["image_size"]) or size_problems(proto)
    problems = problems or typicality_problems(proto, checked["typicality_cut"])
    problems = problems or dme_problems(proto, meta)
    if problems:
        raise ValueError("; ".join(problems))
    return checked


def checked_model(
    model: Path, checks: Callable[[onnx.ModelProto], dict] = grader_checks
) -> tuple[onnx.ModelProto, dict]:
    """The ONNX file ``model`` and its checked metadata, or ``ModelFileError`` saying why it is refused.

    Args:
        model: the file.
        checks: graph and metadata checks of the kind of model expected (a grading model's by
            default); they raise ``ValueError`` (or ``KeyError``, ``TypeError``) for a problem.
    """
    if not model.is_file() or model.stat().st_size == 0:
        raise ModelFileError(
            f"{model}: {'empty file' if model.is_file() else 'no such file'}; "
            "pass the .onnx file `drgrade export` wrote"
        )
    if model.stat().st_size > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"{model}: {model.stat().st_size:,} bytes, over the {MAX_MODEL_BYTES:,} accepted"
        )
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as error:  # protobuf raises its own types for malformed files
        raise ModelFileError(
            f"{model} is not a valid ONNX model ({str(error).splitlines()[0][:200]})"
        ) from None
    try:
        checked = checks(proto)
    except RecursionError:
        raise ModelFileError(f"{model} was refused: its metadata is nested too deeply to read") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"{model} was refused: {error}") from None
    return proto, checked


def open_session(
    proto: onnx.ModelProto, model: Path, threads: int | None = None, providers: list[str] | None = None
) -> ort.InferenceSession:
    """An onnxruntime session of a checked graph (``ModelFileError`` when onnxruntime refuses it)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(
            proto.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own types for every malformed graph
        raise ModelFileError(
            f"{model} is not a valid ONNX model ({str(error).splitlines()[0][:200]})"
        ) from None


class OnnxGrader:
    """An exported drgrade model in an onnxruntime session, checked before it is trusted to grade.

    Args:
        model: the ``.onnx`` file ``drgrade export`` wrote.
        providers: onnxruntime's execution providers (default: CPU).
        threads: onnxruntime's threads (default: its own).
        quality: an exported quality model (``drgrade export`` of a ``quality`` checkpoint): a
            photograph the rule gate passes and it calls "reject" is not graded, as in ``predict``.
    """

    def __init__(
        self,
        model: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
        quality: str | Path | None = None,
    ):
        model = Path(model)
        proto, checked = checked_model(model)
        self.size = checked["image_size"]
        self.cut = checked["typicality_cut"]  # a larger ``distance`` is not graded (None: no check)
        self.mean = np.asarray(checked["mean"], np.float32) * 255
        self.std = np.asarray(checked["std"], np.float32) * 255
        self.rule = checked["rule"]
        self.model, self.checkpoint = checked["model"], checked["checkpoint"]
        #: the model card's facts (``drgrade.serving.card``), None for a model exported without one
        self.card: dict | None = checked["card"]
        self.thresholds = [float(t) for t in self.rule["thresholds"]]
        self.vtdr_cut = operating_cut(self.rule, "vtdr")
        self.dme_cut = checked["dme_cut"]  # P(DME) at or over it is DME (None: no cut fitted)
        #: the graph's output names (the rule's, then ``p_dme`` and ``distance`` where it has them)
        self.outputs = [o.name for o in proto.graph.output]
        self.session = open_session(proto, model, threads, providers)
        #: the learned gate (an exported quality model's file), asked in the intake workers
        self.quality = str(quality) if quality is not None else None
        if self.quality is not None:
            quality_gate(self.quality)  # checked now, before any grading

    def tensor(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xSxS float32, cropped, resized and normalised."""
        return normalised(image, self.size, self.mean, self.std)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs (``OUTPUT_NAMES`` order) for normalised images [B, 3, S, S]."""
        return self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})

    def grade_files(
        self,
        paths: Iterable[Path],
        batch_size: int = 16,
        workers: int = 0,
        inputs: list | None = None,
        settled: int = 0,
    ) -> list[PredictionRow]:
        """One row per file, in the given order; an unreadable or ungradable file gets its reason.

        With ``workers`` > 0, files are decoded, gated and preprocessed in that many processes
        while the model runs on earlier batches (a folder of large photographs is decode-bound);
        at most a few batches wait in memory.

        Args:
            paths: the image files.
            batch_size: images per onnxruntime call.
            workers: preprocessing processes (0: in this process).
            inputs: when given, filled with each file's network input (None where not graded).
            settled: entries of the same folder already answered (skipped when listed): the
                progress bar counts them too, so it ends at the count the summary gives.
        """
        paths = list(paths)
        prepare = partial(prepared, size=self.size, mean=self.mean, std=self.std, quality=self.quality)
        rows = [PredictionRow(str(path), model=self.model, checkpoint=self.checkpoint) for path in paths]
        pending: list[tuple[int, np.ndarray]] = []  # (row, network input) waiting for a batch
        with _pool(workers) as pool, tqdm(
            total=settled + len(paths), initial=settled, desc="grading", unit="file"
        ) as bar:
            for index, (tensor, error, quality, exam) in enumerate(
                _ordered(pool, prepare, paths, depth=4 * batch_size)
            ):
                rows[index].error, rows[index].quality = error, quality
                rows[index].patient_id, rows[index].eye, rows[index].study_date = exam
                if inputs is not None:
                    inputs.append(tensor)
                if not error:
                    pending.append((index, tensor))
                if len(pending) == batch_size:
                    self._grade_batch(pending, rows)
                bar.update()
            if pending:
                self._grade_batch(pending, rows)
        return rows

    def _grade_batch(self, pending: list[tuple[int, np.ndarray]], rows: list[PredictionRow]) -> None:
        """Run one batch and fill in its rows with the checked decisions; empties ``pending``."""
        outputs = self.run(np.stack([tensor for _, tensor in pending]))
        named = dict(zip(self.outputs, outputs, strict=True))
        p_dme = named[P_DME].tolist() if P_DME in named else None
        decisions = checked_decisions(
            outputs[: len(OUTPUT_NAMES)], self.thresholds, self.vtdr_cut, p_dme, self.dme_cut
        )
        for row, (index, _), decision in zip(range(len(pending)), pending, decisions, strict=True):
            atypical = self.atypical(outputs, row)
            if atypical:
                rows[index].error = atypical
            else:
                decided_row(rows[index], decision)
        pending.clear()

    def atypical(self, outputs: list[np.ndarray], row: int) -> str:
        """Why image ``row`` of a batch is unlike any training photograph ("" when it is not)."""
        if self.cut is None:
            return ""
        distance = float(outputs[self.outputs.index(DISTANCE)][row])
        if not distance <= self.cut:  # NaN included: not shown to be typical
            return ATYPICAL.format(distance=distance, cut=self.cut)
        return ""


def quality_checks(proto: onnx.ModelProto) -> dict:
    """An exported quality model's checked metadata (``export_quality_onnx``); ``ValueError`` otherwise."""
    problems = node_problems(proto)
    outputs = [o.name for o in proto.graph.output]
    if outputs != [QUALITY_OUTPUT]:
        problems.append(
            f"outputs {outputs}, not a quality model's [{QUALITY_OUTPUT!r}] (drgrade export of one)"
        )
    if problems:
        raise ValueError("; ".join(problems))
    meta = {p.key: p.value for p in proto.metadata_props}
    refuse_long(meta)
    if json.loads(meta.get("quality_levels", "null")) != list(LEVELS):
        raise ValueError(
            f"quality_levels {meta.get('quality_levels', 'missing')[:80]} are not {list(LEVELS)}"
        )
    checked = input_metadata(meta) | {"name": model_name(meta.get("checkpoint", ""))[:200]}
    problems = input_problems(proto, checked["image_size"]) or size_problems(proto)
    if problems:
        raise ValueError("; ".join(problems))
    return checked


class OnnxQualityModel:
    """An exported quality model: the learned gate without torch, worded as ``predict`` words it.

    Args:
        model: the ``.onnx`` file ``drgrade export`` wrote for a ``quality`` checkpoint.
        threads: onnxruntime's threads (default: its own).
    """

    def __init__(self, model: str | Path, threads: int | None = None):
        model = Path(model)
        proto, checked = checked_model(model, quality_checks)
        self.size = checked["image_size"]
        self.mean = np.asarray(checked["mean"], np.float32) * 255
        self.std = np.asarray(checked["std"], np.float32) * 255
        #: the checkpoint it was exported from, as the checkpoint's own verdicts name it
        self.name = checked["name"] or model.name
        self.session = open_session(proto, model, threads)

    def probabilities(self, crop: np.ndarray) -> np.ndarray:
        """P(good), P(usable), P(reject) of a fundus crop (HxWx3 uint8, resized to the model's input)."""
        tensor = normalise(resize_square(crop, self.size), self.mean, self.std)
        return self.session.run(None, {"image": tensor[None]})[0][0]

    def verdict(self, crop: np.ndarray) -> str:
        """Why the model refuses a fundus crop, or "" when reject is not its most likely level."""
        return learned_verdict(self.probabilities(crop), self.name)


@lru_cache(maxsize=4)
def quality_gate(model: str) -> OnnxQualityModel:
    """The exported quality model at ``model``, loaded once per process (each intake worker its own).

    One thread each: the intake workers already run side by side.
    """
    return OnnxQualityModel(model, threads=1)


def normalised(image: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xSxS float32: fundus crop, resize, normalisation."""
    return normalise(preprocess_fundus(image, size), mean, std)


def normalise(crop: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """A fundus crop (SxSx3 uint8) -> the network's input (3xSxS float32)."""
    return ((crop.astype(np.float32) - mean) / std).transpose(2, 0, 1)


def prepared(
    path: Path, size: int, mean: np.ndarray, std: np.ndarray, quality: str | None = None
) -> tuple[np.ndarray | None, str, list, tuple[str, str, str]]:
    """(network input or None, why it is not graded or "", gate features, exam): one worker's job.

    The exam is a DICOM photograph's patient, eye and study date (empty strings for other files).

    The same one-decode intake as training (``drgrade.data.intake.take_in``): a large JPEG is
    decoded at reduced scale, the gate measures at its fixed working size. With ``quality`` (an
    exported quality model's file), what the rule gate passes must pass the learned gate too,
    asked on the same network-size crop as ``predict`` asks it.
    """
    crop, facts = take_in(path, size, hashes=False)
    reason = judge(facts)
    if not reason and crop is not None and quality is not None:
        reason = quality_gate(quality).verdict(crop)
    exam = (facts.patient_id, facts.eye, facts.study_date)
    if reason or crop is None:
        return None, reason or "not decodable", facts.features(), exam
    return normalise(crop, mean, std), "", facts.features(), exam


class _InProcess:
    """The executor interface for ``workers=0``: every job runs at once, in this process."""

    def submit(self, fn, *args):
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _pool(workers: int):
    return ProcessPoolExecutor(workers) if workers > 0 else _InProcess()


def _ordered(pool, fn, paths: list[Path], depth: int):
    """``fn(path)`` for every path, in order, with at most ``depth`` jobs submitted ahead."""
    queue: deque[Future] = deque()
    for path in paths:
        queue.append(pool.submit(fn, path))
        if len(queue) >= depth:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()


def main(argv: list[str] | None = None) -> None:
    """``python -m drgrade.deploy MODEL IMAGES [--out CSV]``; problems exit 2 with one message.

    Everything that can be checked is checked before grading starts: the model, the folder, the
    options and that ``--out`` can be written. When no image at all could be graded, the CSV
    (with every reason) is still written, and the exit code is 2.

    Args:
        argv: command-line arguments without the program name.
    """
    parser = argparse.ArgumentParser(prog="python -m drgrade.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="ONNX file from `drgrade export`")
    parser.add_argument("images", type=Path, help="folder of fundus images (png/jpg/tif/bmp/webp/gif)")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"), help="the CSV to write")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="preprocessing processes")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: its own)")
    parser.add_argument("--batch_size", type=int, default=16, help="images per onnxruntime call")
    parser.add_argument(
        "--manifest", type=Path, default=None, help="exam manifest: file,patient_id,eye,field"
    )
    parser.add_argument("--pattern", default=None, help="or a file-stem pattern with groups patient and eye")
    parser.add_argument(
        "--quality_onnx",
        type=Path,
        default=None,
        help="an exported quality model (drgrade export of a quality checkpoint): photographs it "
        "rejects are not graded, as with predict --data.quality_model",
    )
    opts = parser.parse_args(argv)
    printable_names()
    exams_out = exams_path(opts.out)
    try:
        rows, rate = grade_folder(opts)
        write_predictions(opts.out, rows)
        exams = write_exams(exams_out, [row.as_dict() for row in rows])
    except DrgradeError as error:
        print(f"python -m drgrade.deploy: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{len(rows)} file(s) into {opts.out} at {rate:.1f} images/s; {ungradable_summary(rows)}")
    print(f"{exam_summary(exams)} in {exams_out}")
    if rows and all(row.error for row in rows):
        print(
            "python -m drgrade.deploy: error: no image could be graded (see the error column)",
            file=sys.stderr,
        )
        raise SystemExit(2)


def grade_folder(opts: argparse.Namespace) -> tuple[list[PredictionRow], float]:
    """Check everything, then grade the folder: (rows, images per second)."""
    if opts.batch_size < 1 or opts.workers < 0 or (opts.threads is not None and opts.threads < 1):
        raise OptionError("--batch_size and --threads must be at least 1, --workers at least 0")
    inputs = [opts.model, opts.images, opts.quality_onnx, opts.manifest]
    for out in (opts.out, exams_path(opts.out)):  # both files it writes, before any grading
        check_writable(out, inputs)
    grader = OnnxGrader(opts.model, threads=opts.threads, quality=opts.quality_onnx)
    paths, skipped = list_images(opts.images)
    if not paths and not skipped:
        raise OptionError(f"{opts.images} holds no files to grade")
    ids = exam_ids(paths, opts.manifest, opts.pattern)
    start = time.perf_counter()
    rows = grader.grade_files(paths, opts.batch_size, opts.workers, settled=len(skipped))
    rate = len(paths) / max(time.perf_counter() - start, 1e-9)
    for row, found in zip(rows, ids, strict=True):
        if found is not None:  # the manifest's word first, a DICOM header's where it says nothing
            row.patient_id, row.eye = found.patient_id or row.patient_id, found.eye or row.eye
            row.field = found.field
    return rows + [PredictionRow(str(path), error=f"skipped: {reason}") for path, reason in skipped], rate
