"""INT8 ONNX models for CPU screening: static quantisation, calibrated, and never slower than float.

``quantize_onnx`` writes ``<name>.int8.onnx`` beside the float model with the same inputs,
outputs and drgrade metadata (temperature, thresholds, operating points), so
``python -m drgrade.deploy`` runs either file unchanged.

Static quantisation (QDQ format, per-channel weights, activation ranges from the 99.999th
percentile over calibration images, after onnxruntime's shape-inference pre-processing)
quantises the convolutions, which carry almost all of a ResNet's compute. It always calibrates:
on the images given, else (``drgrade export``) on the training split the config names, else on
synthetic fundus photographs. Dynamic quantisation is not offered: onnxruntime's CPU kernels
quantise MatMul/Gemm that way but not Conv, which made a convolutional model about 5x slower
than float. Only Conv, MatMul and Gemm are quantised: the softmax, temperature and threshold
rule stay in float, so the decision rule is exactly the float model's, applied to INT8-computed
logits. After writing, the INT8 model is timed against the float one on the same batch; one
that is slower is deleted and reported as an error rather than shipped as the fast path.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from drgrade.decision.outputs import DISTANCE
from drgrade.errors import QuantizationError
from drgrade.serving.runner import OnnxGrader, prepared

#: The operators computed in INT8 (nearly all of a ResNet's and a transformer's arithmetic).
OPS = ["Conv", "MatMul", "Gemm"]


class _Images(CalibrationDataReader):
    """Calibration images, preprocessed as the runner does, fed to onnxruntime one at a time.

    One at a time because the percentile calibrator stacks every batch's activations (all
    batches must share one shape) and keeps them all in memory (RN50: about 120 MB per image,
    hence ``limit``). An unreadable or ungradable image is skipped.
    """

    def __init__(self, grader: OnnxGrader, paths: Sequence[Path]):
        prepare = partial(prepared, size=grader.size, mean=grader.mean, std=grader.std)
        self.batches = ({"image": tensor[None]} for tensor, error, *_ in map(prepare, paths) if not error)

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def int8_path(model: Path) -> Path:
    """Where the INT8 model of ``model`` goes: ``ranking.onnx`` -> ``ranking.int8.onnx``."""
    return model.with_name(f"{model.stem}.int8.onnx")


def model_rate(grader: OnnxGrader, batch: np.ndarray, repeats: int = 3) -> float:
    """Images/s of a model alone on preprocessed inputs (median of ``repeats`` after a warm-up)."""
    grader.run(batch)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        grader.run(batch)
        rates.append(len(batch) / (time.perf_counter() - start))
    return float(np.median(rates))


def quantize_onnx(
    model: str | Path, calibration: Sequence[Path], source: str, limit: int = 32, keep_slower: bool = False
) -> Path:
    """Write the INT8 model of an exported drgrade ONNX file; returns its path.

    Args:
        model: the float ``.onnx`` from ``drgrade export``.
        calibration: image files to calibrate the activation ranges on (unreadable ones are skipped).
        source: what they are, recorded in the model's metadata (``training split``, ...).
        limit: calibration images used at most (the ranges settle within a few dozen).
        keep_slower: keep an INT8 model slower than float (wanted for its size alone), with a warning.

    Raises:
        QuantizationError: no usable calibration image, or the INT8 model is slower than float.
    """
    model = Path(model)
    grader = OnnxGrader(model)  # checks the file is a drgrade export
    paths = list(calibration)[:limit]
    if not paths:
        raise QuantizationError(f"no calibration images ({source}); pass --calibration_images DIR")
    out = int8_path(model)
    float_model = onnx.load(str(model))
    with tempfile.TemporaryDirectory() as work:
        prepared_model, graded_model = Path(work) / "prepared.onnx", Path(work) / "graded.onnx"
        graded = onnx.load(str(model))
        dropped = drop_distance_branch(graded)  # see NO_INT8_TYPICALITY
        onnx.save(graded, str(graded_model))
        quant_pre_process(str(graded_model), str(prepared_model), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram settings
            quantize_static(
                str(prepared_model),
                str(out),
                _Images(grader, paths),
                quant_format=QuantFormat.QDQ,
                calibrate_method=CalibrationMethod.Percentile,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=OPS,
            )
    quantised = onnx.load(str(out))
    carry_metadata(
        float_model, quantised, f"int8-static, calibrated on {len(paths)} images: {source}", dropped
    )
    onnx.save(quantised, str(out))
    refuse_if_slower(model, out, keep_slower)
    return out


def carry_metadata(float_model: onnx.ModelProto, quantised: onnx.ModelProto, how: str, dropped: bool) -> None:
    """The float model's metadata on the INT8 one, with how it was quantized (and without the check)."""
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(float_model.metadata_props)
    if dropped:
        for entry in quantised.metadata_props:
            if entry.key == "typicality":
                entry.value = json.dumps({"fitted": False, "cut": None, "note": NO_INT8_TYPICALITY})
        warnings.warn(NO_INT8_TYPICALITY, stacklevel=3)
    entry = quantised.metadata_props.add()
    entry.key, entry.value = "quantization", how


def distance_only(model: onnx.ModelProto) -> set[str]:
    """The nodes only the typicality ``distance`` output needs (none without that output)."""
    outputs = [o.name for o in model.graph.output]
    if DISTANCE not in outputs:
        return set()
    producers = {output: node for node in model.graph.node for output in node.output}

    def ancestors(names: list[str]) -> set[str]:
        found: set[str] = set()
        pending = [producers[n] for n in names if n in producers]
        while pending:
            node = pending.pop()
            if node.name not in found:
                found.add(node.name)
                pending.extend(producers[i] for i in node.input if i in producers)
        return found

    return ancestors([DISTANCE]) - ancestors([o for o in outputs if o != DISTANCE])


#: Why an INT8 model has no typicality check (its metadata and the warning say so).
NO_INT8_TYPICALITY = (
    "the INT8 model has no typicality check: its cut was fitted on float embeddings, and a "
    "Mahalanobis distance magnifies INT8 noise along directions where the training photographs "
    "hardly vary (in-sample photographs land far past the cut), while keeping that branch in float "
    "would cost the speed INT8 is for; grade with the float model to keep the check"
)


def drop_distance_branch(model: onnx.ModelProto) -> bool:
    """Remove the typicality ``distance`` output and the nodes only it needs; whether there was one."""
    only = distance_only(model)
    kept = [o for o in model.graph.output if o.name != DISTANCE]
    if len(kept) == len(model.graph.output):
        return False
    nodes = [node for node in model.graph.node if node.name not in only]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}  # the branch's constants go with it
    initializers = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    return True


def refuse_if_slower(float_model: Path, int8_model: Path, keep_slower: bool) -> None:
    """Delete an INT8 model slower than its float one, with an error (or warn, when kept on purpose)."""
    float_rate, int8_rate = compared_speed(float_model, int8_model)
    if int8_rate >= float_rate:
        return
    message = (
        f"the INT8 model ran at {int8_rate:.1f} images/s against {float_rate:.1f} for float on this "
        "machine (small networks and CPUs without fast INT8 instructions gain nothing)"
    )
    if not keep_slower:
        int8_model.unlink()
        raise QuantizationError(
            f"{message}, so it was not kept: grade with the float model {float_model}, or pass "
            "--keep_slower_int8 to keep it for its size alone"
        )
    warnings.warn(f"{message}; kept as asked, for its size", stacklevel=3)


def compared_speed(float_model: Path, int8_model: Path, batch_size: int = 8) -> tuple[float, float]:
    """(float, INT8) images/s of the two models on one random batch of the model's input size."""
    size = OnnxGrader(float_model).size
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, size, size)).astype(np.float32)
    return model_rate(OnnxGrader(float_model), batch), model_rate(OnnxGrader(int8_model), batch)
