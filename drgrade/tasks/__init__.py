"""LightningModules: one per model, all sharing ``BaseTask``'s evaluation and decision rule."""

from drgrade.tasks.base import BaseTask, TrainableTask
from drgrade.tasks.cnn_baseline import CNNBaseline
from drgrade.tasks.ensemble import EnsembleCLIP
from drgrade.tasks.fcn_clip import FCNCLIP
from drgrade.tasks.loading import load_task, read_checkpoint
from drgrade.tasks.quality import QualityTask
from drgrade.tasks.ranking import RankingCLIP
from drgrade.tasks.zero_shot import ZeroShotCLIP

__all__ = [
    "FCNCLIP",
    "BaseTask",
    "CNNBaseline",
    "EnsembleCLIP",
    "QualityTask",
    "RankingCLIP",
    "TrainableTask",
    "ZeroShotCLIP",
    "load_task",
    "read_checkpoint",
]
