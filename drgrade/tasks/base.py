"""``BaseTask``: the step logic, evaluation and decision rule every DR model shares.

Subclasses build their networks in ``configure_models``, their loss in ``configure_losses`` and
implement ``forward(images) -> logits``; everything else (probabilities, the thresholded
decision rule, split-level metrics, calibration, prediction rows, optimiser) lives here once.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from drgrade.evaluation.callbacks import EvaluationWriter, PredictionWriter, split_rows
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.store import PredictionStore
from drgrade.evaluation.thresholds import calibrate_thresholds, decide
from drgrade.grades import NUM_GRADES
from drgrade.models.clip_backbone import CLIPBackbone

#: Checkpoint entry naming the task class that wrote it.
TASK_KEY = "drgrade_task"

#: Scalars logged every validation/test epoch (the rest go to metrics.json).
LOGGED = ("accuracy", "qwk", "auroc_macro", "macro_f1", "macro_recall", "off_by_two_plus")


class BaseTask(L.LightningModule):
    """Shared LightningModule for DR grading.

    Args:
        lr: AdamW learning rate (Table 2: 2e-4).
        weight_decay: AdamW weight decay (Table 2: 1e-3).
        finetune_image: train the CLIP image tower too, at ``image_lr`` (pretrained towers want a
            much smaller step than new heads). Off in the paper's setup; a random-weight
            backbone (the demo) needs it, since random frozen features carry little signal.
        calibration: ``none`` for argmax, or ``youden`` / ``f1`` to calibrate per-class
            thresholds on every validation pass of ``fit`` (so each checkpoint carries the
            thresholds matching its weights) and, with ``calibrate_on_validate``, in
            ``drgrade validate``. Test and predict then decide by ``argmax_k p_k / t_k``.
        calibrate_on_validate: also calibrate during ``drgrade validate``.
    """

    trainable: ClassVar[bool] = True

    def __init__(
        self,
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        finetune_image: bool = False,
        image_lr: float = 1e-5,
        calibration: Literal["none", "youden", "f1"] = "none",
        calibrate_on_validate: bool = False,
    ):
        super().__init__()
        # collects the init args of the whole subclass chain, so configure_models can read them
        self.save_hyperparameters()
        self.lr = lr
        self.weight_decay = weight_decay
        self.calibration = calibration
        self.calibrate_on_validate = calibrate_on_validate
        self.register_buffer("thresholds", torch.full((NUM_GRADES,), 1.0 / NUM_GRADES))
        self.register_buffer("calibrated", torch.tensor(False))
        self.store = PredictionStore()
        self.last_result: SplitResult | None = None
        self.criterion: nn.Module | None = None
        self.configure_models()
        self.configure_losses()

    # -- hooks for subclasses -------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build the networks (called from ``__init__``)."""
        raise NotImplementedError

    def build_backbone(self) -> CLIPBackbone:
        """The shared CLIP wrapper from the ``backbone`` / ``pretrained`` / ``image_size`` options;
        the text tower is always frozen, the image tower unless a trainable task fine-tunes it."""
        hp = self.hparams
        finetune = self.trainable and hp.finetune_image
        return CLIPBackbone(
            hp.backbone, hp.pretrained, hp.image_size, freeze_image=not finetune, freeze_text=True
        )

    def configure_losses(self) -> None:
        """Set ``self.criterion`` (called from ``__init__``; ``setup`` may refine it with data)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def split_extras(self, stage: str) -> dict:
        """Extra entries for a split's metrics.json (e.g. the chosen template set)."""
        return {}

    def configure_callbacks(self) -> list[Callback]:
        return [EvaluationWriter(), PredictionWriter()]

    def export_module(self) -> nn.Module:
        """The module ONNX export traces: images -> logits (override to fold constants in)."""
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the task class, so ``load_task`` can rebuild any checkpoint (the ensemble does)."""
        checkpoint[TASK_KEY] = f"{type(self).__module__}:{type(self).__qualname__}"

    # -- decision -------------------------------------------------------------------------------
    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """argmax_k p_k / t_k with the calibrated thresholds, plain argmax before calibration."""
        return decide(probs, self.thresholds if bool(self.calibrated) else None)

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def _evaluation_step(self, batch: dict, stage: str) -> None:
        logits = self(batch["image"])
        if self.criterion is not None:
            loss = self.criterion(logits, batch["label"])
            self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(logits))
        self.store.update(self.probabilities(logits), batch["label"], batch["index"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        probs = self.probabilities(self(batch["image"]))
        return split_rows(probs.cpu(), self.decide(probs).cpu(), batch)

    # -- split-level evaluation -----------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        self._finish_split("val")

    def on_test_epoch_end(self) -> None:
        self._finish_split("test")

    def _should_calibrate(self, stage: str) -> bool:
        if self.calibration == "none" or stage != "val" or self.trainer.sanity_checking:
            return False
        fn = self.trainer.state.fn
        return fn == TrainerFn.FITTING or (fn == TrainerFn.VALIDATING and self.calibrate_on_validate)

    def _finish_split(self, stage: str) -> None:
        probs, targets, index = self.store.compute()
        self.store.reset()
        if self.trainer.sanity_checking or len(targets) == 0:
            return
        self._evaluate(stage, probs, targets, index)

    def _evaluate(self, stage: str, probs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> None:
        """Calibrate when due, compute the split's metrics, log scalars, keep the result."""
        if self._should_calibrate(stage):
            self.thresholds.copy_(calibrate_thresholds(probs, targets, self.calibration))
            self.calibrated.fill_(True)
        preds = self.decide(probs).cpu()
        evaluation = compute_metrics(probs, targets, preds)
        argmax = compute_metrics(probs, targets, probs.argmax(1)) if bool(self.calibrated) else None
        self.last_result = SplitResult(
            stage,
            probs,
            targets,
            index,
            preds,
            evaluation,
            argmax,
            self.thresholds.tolist() if bool(self.calibrated) else None,
            self.split_extras(stage),
        )
        values = {f"{stage}/{name}": evaluation.metrics[name] for name in LOGGED}
        if argmax is not None:
            values |= {f"{stage}/argmax_{name}": argmax.metrics[name] for name in ("accuracy", "qwk")}
        # identical on every rank (computed from synced states): the sync averages equal values
        self.log_dict({k: float("nan") if v is None else v for k, v in values.items()}, sync_dist=True)

    # -- optimisation ---------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Trainable parameters: the task's own at ``lr``, a fine-tuned image tower at ``image_lr``."""
        backbone = getattr(self, "backbone", None)
        tower = {id(p) for p in backbone.image_parameters()} if backbone is not None else set()
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in tower]}]
        image = [p for p in trainable if id(p) in tower]
        if image:
            groups.append({"params": image, "lr": self.hparams.image_lr})
        return groups

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [g for g in self.parameter_groups() if g["params"]]
        if not groups:
            raise RuntimeError(f"{type(self).__name__} has no trainable parameters to optimise")
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)


def load_task(path: str | Path, map_location: str | torch.device = "cpu") -> BaseTask:
    """Rebuild whichever task wrote the checkpoint at ``path`` (its class is stored inside)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    if TASK_KEY not in checkpoint:
        raise ValueError(f"{path} was not written by a drgrade task (no {TASK_KEY!r} entry)")
    module, name = checkpoint[TASK_KEY].split(":")
    task_class = getattr(importlib.import_module(module), name)
    return task_class.load_from_checkpoint(path, map_location=map_location)
