"""Every Lightning callback of drgrade.

The result writers (``EvaluationWriter``, ``PredictionWriter``, ``SplitWriter``, ``TrainingSummary``,
``ValidationPredictionsWriter``) are listed in ``configs/trainer.yaml``'s callbacks, each with its
options, so a config can leave one out or add one; the engine adds ``SplitGuard`` to every trainer.
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
from drgrade.callbacks.writer import RunWriter

__all__ = [
    "AttentionWriter",
    "ChannelsLast",
    "CheckpointArtifact",
    "EvaluationWriter",
    "PredictionWriter",
    "RunWriter",
    "SplitGuard",
    "SplitWriter",
    "TrainingSummary",
    "ValidationPredictionsWriter",
]
