"""Data: native-layout readers, patient-grouped split, class rebalancing, tiered augmentation."""

from drgrade.data.datamodule import DRDataModule
from drgrade.data.dataset import FundusDataset
from drgrade.data.sources import DataValidationError, Record, load_sources
from drgrade.data.synthetic import write_synthetic

__all__ = [
    "DRDataModule",
    "DataValidationError",
    "FundusDataset",
    "Record",
    "load_sources",
    "write_synthetic",
]
