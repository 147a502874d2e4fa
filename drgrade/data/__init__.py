"""Data: native-layout readers, patient-grouped split, class rebalancing, tiered augmentation.

Names are imported lazily so that light modules (``drgrade.data.images``, ``preprocess``) can be
used without importing torch and Lightning, as the ONNX runner ``drgrade.deploy`` does.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DRDataModule": "drgrade.data.datamodule",
    "FundusDataset": "drgrade.data.dataset",
    "DataValidationError": "drgrade.errors",
    "Record": "drgrade.data.sources",
    "load_sources": "drgrade.data.sources",
    "write_synthetic": "drgrade.data.sources",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drgrade.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
