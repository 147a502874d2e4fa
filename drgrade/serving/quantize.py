"""INT8 ONNX models for CPU screening: static quantisation calibrated on images the user names.

``quantize_onnx`` writes ``<name>.int8.onnx`` beside the float model with the same inputs,
outputs and drgrade metadata (temperature, thresholds, operating points), so
``python -m drgrade.deploy`` runs either file unchanged.

Static quantisation (QDQ format, per-channel weights, activation ranges from the 99.999th
percentile over the calibration images, after onnxruntime's shape-inference pre-processing) quantises the
convolutions, which carry almost all of a ResNet's compute. Without calibration images it
falls back to dynamic quantisation (weights only, activations quantised on the fly), which on
onnxruntime's CPU kernels covers MatMul/Gemm but not Conv: much smaller file, little speed-up.
Only Conv, MatMul and Gemm are quantised: the softmax, temperature and threshold rule stay in
float, so the decision rule is exactly the float model's, applied to INT8-computed logits.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from drgrade.data.images import list_images
from drgrade.errors import ModelFileError
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
        self.batches = ({"image": tensor[None]} for tensor, error, _ in map(prepare, paths) if not error)

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def int8_path(model: Path) -> Path:
    """Where the INT8 model of ``model`` goes: ``ranking.onnx`` -> ``ranking.int8.onnx``."""
    return model.with_name(f"{model.stem}.int8.onnx")


def quantize_onnx(model: str | Path, calibration: str | Path | None = None, limit: int = 32) -> Path:
    """Write the INT8 model of an exported drgrade ONNX file; returns its path.

    Args:
        model: the float ``.onnx`` from ``drgrade export``.
        calibration: a folder of training images for static quantisation (None: dynamic).
        limit: calibration images used at most (the ranges settle within a few dozen).
    """
    model = Path(model)
    grader = OnnxGrader(model)  # checks the file is a drgrade export
    out = int8_path(model)
    float_model = onnx.load(str(model))
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        if calibration is None:
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=OPS)
        else:
            paths, _ = list_images(calibration)
            if not paths:
                raise ModelFileError(f"{calibration}: no calibration images found")
            quantize_static(
                str(prepared),
                str(out),
                _Images(grader, paths[:limit]),
                quant_format=QuantFormat.QDQ,
                calibrate_method=CalibrationMethod.Percentile,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=OPS,
            )
    quantised = onnx.load(str(out))
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(float_model.metadata_props)
    entry = quantised.metadata_props.add()
    entry.key, entry.value = "quantization", "int8-static" if calibration is not None else "int8-dynamic"
    onnx.save(quantised, str(out))
    return out
