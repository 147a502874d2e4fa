"""LightningModules: one per model, all sharing ``BaseTask``'s evaluation and decision rule."""

from drgrade.tasks.base import BaseTask, load_task
from drgrade.tasks.ensemble import EnsembleCLIP
from drgrade.tasks.fcn_clip import FCNCLIP
from drgrade.tasks.ranking import RankingCLIP
from drgrade.tasks.zero_shot import ZeroShotCLIP

__all__ = ["FCNCLIP", "BaseTask", "EnsembleCLIP", "RankingCLIP", "ZeroShotCLIP", "load_task"]
