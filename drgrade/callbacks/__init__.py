"""Every Lightning callback of drgrade.

Tasks add the evaluation, prediction, split and training-summary writers themselves (``configure_callbacks``);
``ChannelsLast`` and ``CheckpointArtifact`` are opt-in
(``--trainer.callbacks+=drgrade.callbacks.ChannelsLast``) and ``AttentionWriter`` is what
``drgrade explain`` adds to a predict run.
"""

from drgrade.callbacks.artifacts import CheckpointArtifact
from drgrade.callbacks.attention import AttentionWriter
from drgrade.callbacks.evaluation import EvaluationWriter
from drgrade.callbacks.performance import ChannelsLast
from drgrade.callbacks.predictions import PredictionWriter
from drgrade.callbacks.split import SplitGuard, SplitWriter
from drgrade.callbacks.training import TrainingSummary
from drgrade.callbacks.validation_predictions import ValidationPredictionsWriter

__all__ = [
    "AttentionWriter",
    "ChannelsLast",
    "CheckpointArtifact",
    "EvaluationWriter",
    "PredictionWriter",
    "SplitGuard",
    "SplitWriter",
    "TrainingSummary",
    "ValidationPredictionsWriter",
]
