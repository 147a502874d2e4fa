"""The task base classes.

``BaseTask``: the evaluation, decision rule and prediction step every DR model shares, and ``TrainableTask``:
the optimiser
and training step of the models that learn.

Subclasses build their networks in ``configure_models``, their loss in ``configure_losses``,
implement ``forward(images) -> logits`` and ``attention_maps(images)``; everything else
(probabilities, the thresholded decision rule, split-level metrics, calibration) lives here once.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from drgrade.callbacks import EvaluationWriter, PredictionWriter, SplitGuard, SplitWriter
from drgrade.errors import OptionError
from drgrade.evaluation.bootstrap import BootstrapSpec
from drgrade.evaluation.clinical import (
    OPERATING_POINTS,
    fit_operating_points,
    fit_temperature,
    softmax,
    uncertainty_cutoff,
)
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.store import PredictionStore
from drgrade.evaluation.summary import ValidationSettings
from drgrade.evaluation.thresholds import (
    calibrate_thresholds,
    choose_objective,
    crossfit_decisions,
    decide,
    qwk,
)
from drgrade.grades import NUM_GRADES
from drgrade.models.clip_backbone import CLIPBackbone
from drgrade.predictions import ReferralRule

#: Scalars logged every validation/test epoch (the rest go to metrics.json).
LOGGED = ("accuracy", "qwk", "auroc_macro", "macro_f1", "macro_recall", "off_by_two_plus")

Calibration = Literal["none", "youden", "f1", "qwk", "auto"]


def check_clinical_options(
    target_sensitivity: float, target_specificity: float, refer_fraction: float, bootstrap_resamples: int
) -> None:
    """Refuse operating-point targets, referral fractions or resample counts outside their range."""
    for name, value in (
        ("target_sensitivity", target_sensitivity),
        ("target_specificity", target_specificity),
    ):
        if not 0 < value <= 1:
            raise OptionError(f"model.init_args.{name} must be in (0, 1], got {value}")
    if not 0 <= refer_fraction < 1:
        raise OptionError(f"model.init_args.refer_fraction must be in [0, 1), got {refer_fraction}")
    if bootstrap_resamples < 0:
        raise OptionError(f"model.init_args.bootstrap_resamples must be >= 0, got {bootstrap_resamples}")


class BaseTask(L.LightningModule):
    """Shared LightningModule for DR grading.

    Args:
        calibration: ``none`` for argmax, or ``youden`` / ``f1`` / ``qwk`` / ``auto`` (the one
            with the best cross-fitted validation QWK) to calibrate per-class
            thresholds on every validation pass of ``fit`` (so each checkpoint carries the
            thresholds matching its weights) and, with ``calibrate_on_validate``, in
            ``drgrade validate``. Test and predict then decide by ``argmax_k p_k / t_k``.
        calibrate_on_validate: also calibrate during ``drgrade validate``.
        target_sensitivity: the referral operating points' sensitivity target on validation
            (referable and vision-threatening DR, each with its own cut).
        target_specificity: the high-specificity operating points' target on validation.
        refer_fraction: the share of validation images whose predictive entropy marks them for
            a human grader; the entropy cut travels in the checkpoint to ``predict``.
        bootstrap_resamples: patient-level bootstrap resamples for the confidence intervals of
            a validate/test run (0: none).

    Every fitting validation pass also fits a temperature (NLL on validation) applied to the
    logits before thresholds, operating points and export.
    """

    trainable: ClassVar[bool] = False
    #: Folder name of this model's runs (``runs/<run_name>``) and its column in reports.
    run_name: ClassVar[str] = "model"
    display_name: ClassVar[str] = "Model"

    def __init__(
        self,
        calibration: Calibration = "none",
        calibrate_on_validate: bool = False,
        target_sensitivity: float = 0.9,
        target_specificity: float = 0.95,
        refer_fraction: float = 0.1,
        bootstrap_resamples: int = 2000,
    ):
        check_clinical_options(target_sensitivity, target_specificity, refer_fraction, bootstrap_resamples)
        super().__init__()
        # collects the init args of the whole subclass chain, so configure_models can read them
        self.save_hyperparameters()
        self.calibration = calibration
        self.calibrate_on_validate = calibrate_on_validate
        self.register_buffer("thresholds", torch.full((NUM_GRADES,), 1.0 / NUM_GRADES))
        self.register_buffer("calibrated", torch.tensor(False))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("operating_cuts", torch.full((len(OPERATING_POINTS),), float("nan")))
        self.register_buffer("uncertainty_cutoff", torch.tensor(float("inf")))
        self.store = PredictionStore()
        #: The latest evaluation of each split ("val", "test"), read by ``EvaluationWriter``.
        self.results: dict[str, SplitResult] = {}
        self.criterion: nn.Module | None = None
        #: Which objective ``calibration: auto`` chose and the cross-fitted QWK of each.
        self.calibration_choice: dict | None = None
        #: The split the loaded checkpoint was fitted on (None before fitting or loading).
        self.split_identity: dict | None = None
        self.configure_models()
        self.configure_losses()

    # -- hooks for subclasses -------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build the networks (called from ``__init__``)."""
        raise NotImplementedError

    def build_backbone(self, finetune_image: bool = False) -> CLIPBackbone:
        """The shared CLIP wrapper from the ``backbone`` / ``pretrained`` / ``image_size`` options.

        Args:
            finetune_image: leave the image tower trainable (the text tower is always frozen).
        """
        hp = self.hparams
        return CLIPBackbone(
            hp.backbone, hp.pretrained, hp.image_size, freeze_image=not finetune_image, freeze_text=True
        )

    def configure_losses(self) -> None:
        """Set ``self.criterion`` (called from ``__init__``; ``setup`` may refine it with data)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] of normalised images [B, 3, S, S]."""
        raise NotImplementedError

    def attention_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Where the model looks: (maps [B, S, S] in [0, 1], probabilities [B, K], method name)."""
        raise NotImplementedError(f"{type(self).__name__} has no attention map")

    def load_submodules(self) -> None:
        """Build parts that come from elsewhere before a state dict is loaded (the ensemble's members)."""

    def split_extras(self, stage: str) -> dict:
        """Extra entries for a split's metrics.json (e.g. the chosen template set).

        Args:
            stage: ``val`` or ``test``.
        """
        return {}

    def configure_callbacks(self) -> list[Callback]:
        """Return the result writers (evaluation, predictions, split audit) and the split guard."""
        return [EvaluationWriter(), PredictionWriter(), SplitWriter(), SplitGuard()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the task class (so ``load_task`` can rebuild any checkpoint) and record the split."""
        checkpoint["drgrade_task"] = type(self).__name__
        identity = getattr(self.trainer.datamodule, "split_identity", None) if self._trainer else None
        checkpoint["drgrade_split"] = identity or self.split_identity
        checkpoint["drgrade_calibration"] = self.calibration_choice

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Remember the split the checkpoint was fitted on and how it was calibrated."""
        self.split_identity = checkpoint.get("drgrade_split")
        self.calibration_choice = checkpoint.get("drgrade_calibration")

    def split_identities(self) -> list[tuple[str, dict]]:
        """(what, split identity) of every fitted part of this model (empty when none is known)."""
        return [(type(self).__name__ + " checkpoint", self.split_identity)] if self.split_identity else []

    def export_module(self) -> nn.Module:
        """The module ONNX export traces: images -> logits (override to fold constants in)."""
        return self

    # -- decision -------------------------------------------------------------------------------
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of logits / temperature in float32 (logits may come from bf16 autocast)."""
        return (logits.float() / self.temperature).softmax(dim=1)

    def validation_settings(self) -> ValidationSettings:
        """The temperature and operating cuts fitted on validation, and the bootstrap to draw."""
        hp = self.hparams
        return ValidationSettings(
            float(self.temperature),
            self.operating_cuts.tolist(),
            hp.target_sensitivity,
            hp.target_specificity,
            BootstrapSpec(resamples=hp.bootstrap_resamples),
        )

    def referral_rule(self) -> ReferralRule:
        """The referable cut and uncertainty cut ``predict`` flags images with."""
        cut = float(self.operating_cuts[OPERATING_POINTS.index(("referable", "sensitivity"))])
        return ReferralRule(cut if math.isfinite(cut) else None, float(self.uncertainty_cutoff))

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """argmax_k p_k / t_k with the calibrated thresholds, plain argmax before calibration."""
        return decide(probs, self.thresholds if bool(self.calibrated) else None)

    # -- steps ----------------------------------------------------------------------------------
    def evaluation_step(self, batch: dict, stage: str) -> None:
        """Store one batch's probabilities (and log its loss when the task has one)."""
        logits = self(batch["image"])
        if self.criterion is not None:
            loss = self.criterion(logits, batch["label"])
            self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(logits))
        self.store.update(logits, batch["label"], batch["index"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """One validation batch."""
        self.evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """One test batch."""
        self.evaluation_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Probabilities and decided grades of one batch, for ``PredictionWriter``."""
        probs = self.probabilities(self(batch["image"]))
        return {
            "index": batch["index"].cpu(),
            "probs": probs.cpu(),
            "grade": self.decide(probs).cpu(),
            "error": batch["error"],
            "quality": batch["quality"].cpu() if "quality" in batch else None,
        }

    # -- split-level evaluation -----------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        """Evaluate the whole validation split at once."""
        self.finish_split("val")

    def on_test_epoch_end(self) -> None:
        """Evaluate the whole test split at once."""
        self.finish_split("test")

    def should_calibrate(self, stage: str) -> bool:
        """Fit the validation-set settings on validation passes of ``fit`` (and ``validate`` when asked)."""
        if stage != "val" or self.trainer.sanity_checking:
            return False
        fn = self.trainer.state.fn
        return fn == TrainerFn.FITTING or (fn == TrainerFn.VALIDATING and self.calibrate_on_validate)

    def finish_split(self, stage: str) -> None:
        """Gather the split's stored logits (all ranks) and evaluate them."""
        logits, targets, index = self.store.compute()
        self.store.reset()
        if self.trainer.sanity_checking or len(targets) == 0:
            return
        self.evaluate(stage, logits, targets, index)

    def fit_validation_settings(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Fit temperature, thresholds, operating points and the uncertainty cut; return the probabilities.

        Args:
            logits: the validation split's logits [N, K].
            targets: its grades [N].
        """
        hp = self.hparams
        self.temperature.fill_(fit_temperature(logits.double().numpy(), targets.numpy()))
        probs = self.probabilities(logits)
        if self.calibration != "none":
            method = self.calibration
            if method == "auto":
                method, scores = choose_objective(probs, targets)
                self.calibration_choice = {"objective": method, "crossfit_qwk": scores}
            self.thresholds.copy_(calibrate_thresholds(probs, targets, method))
            self.calibrated.fill_(method != "none")  # auto may find argmax best out of sample
        calibrated = probs.double().numpy()
        cuts = fit_operating_points(calibrated, targets.numpy(), hp.target_sensitivity, hp.target_specificity)
        self.operating_cuts.copy_(torch.tensor(cuts))
        self.uncertainty_cutoff.fill_(uncertainty_cutoff(calibrated, hp.refer_fraction))
        return probs

    def evaluate(self, stage: str, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> None:
        """Fit the validation settings when due, compute the split's metrics, log scalars, keep the result."""
        logits = logits.cpu()
        if self.should_calibrate(stage):
            probs = self.fit_validation_settings(logits, targets)
        else:
            probs = self.probabilities(logits)
        preds = self.decide(probs).cpu()
        evaluation = compute_metrics(probs, targets, preds)
        argmax = compute_metrics(probs, targets, probs.argmax(1)) if bool(self.calibrated) else None
        thresholds = self.thresholds.tolist() if bool(self.calibrated) else None
        extras = self.split_extras(stage)
        if bool(self.calibrated) or self.calibration_choice:
            extras["calibration"] = {"setting": self.calibration, **(self.calibration_choice or {})}
        self.results[stage] = SplitResult(
            stage,
            probs,
            targets,
            index,
            preds,
            evaluation,
            argmax,
            thresholds,
            extras,
            uncalibrated_probs=torch.from_numpy(softmax(logits.double().numpy())).float(),
        )
        values = {f"{stage}/{name}": evaluation.metrics[name] for name in LOGGED}
        if argmax is not None:
            values |= {f"{stage}/argmax_{name}": argmax.metrics[name] for name in ("accuracy", "qwk")}
        if stage == "val":
            values["val/selection_qwk"] = self.selection_qwk(probs, targets, preds)
        # identical on every rank (computed from synced states): the sync averages equal values
        self.log_dict({k: float("nan") if v is None else v for k, v in values.items()}, sync_dist=True)

    def selection_qwk(self, probs: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor) -> float:
        """Return the validation score checkpoints are chosen by.

        It is never computed with thresholds fitted to the images it scores: while fitting a
        calibrating task, it is the QWK of cross-fitted calibrated decisions (thresholds fitted on
        one half of the split decide the other half); otherwise the QWK of the decisions made.

        Args:
            probs: validation probabilities.
            targets: validation grades.
            preds: the decisions the metrics used.
        """
        if self.calibration != "none" and self.trainer.state.fn == TrainerFn.FITTING:
            preds = crossfit_decisions(probs, targets, self.calibration)
        return qwk(preds, targets, NUM_GRADES)


class TrainableTask(BaseTask):
    """A task with parameters to learn: AdamW (Table 2), optional image-tower fine-tuning.

    Args:
        lr: AdamW learning rate (Table 2: 2e-4).
        weight_decay: AdamW weight decay (Table 2: 1e-3).
        finetune_image: train the CLIP image tower too, at ``image_lr``.
        image_lr: the image tower's learning rate (pretrained towers want a much smaller step than
            new heads). A random-weight backbone (the demo) needs fine-tuning, since random frozen
            features carry little signal.
        calibration: see ``BaseTask``.
        **kwargs: ``BaseTask``'s other options (``calibrate_on_validate``, the operating-point
            targets, ``refer_fraction``, ``bootstrap_resamples``).
    """

    trainable = True

    def __init__(
        self,
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        finetune_image: bool = False,
        image_lr: float = 1e-5,
        calibration: Calibration = "none",
        **kwargs,
    ):
        for name, value in (("lr", lr), ("image_lr", image_lr), ("weight_decay", weight_decay)):
            if not value >= 0:
                raise OptionError(f"model.init_args.{name} must be >= 0, got {value}")
        super().__init__(calibration, **kwargs)
        self.lr = lr
        self.weight_decay = weight_decay

    def build_backbone(self, finetune_image: bool | None = None) -> CLIPBackbone:
        """The CLIP wrapper with the image tower trainable when ``finetune_image`` is set.

        Args:
            finetune_image: override the ``finetune_image`` option.
        """
        return super().build_backbone(
            self.hparams.finetune_image if finetune_image is None else finetune_image
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Loss of one (resampled, augmented) training batch."""
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["label"])
        size = len(logits)
        self.log(
            "train/loss", loss, prog_bar=True, batch_size=size, on_step=True, on_epoch=True, sync_dist=True
        )
        accuracy = (logits.argmax(dim=1) == batch["label"]).float().mean()
        self.log("train/accuracy", accuracy, batch_size=size, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def parameter_groups(self) -> list[dict]:
        """Trainable parameters: the task's own at ``lr``, a fine-tuned image tower at ``image_lr``."""
        tower = {id(p) for p in self.backbone.image_parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in tower]}]
        image = [p for p in trainable if id(p) in tower]
        if image:
            groups.append({"params": image, "lr": self.hparams.image_lr})
        return groups

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the parameter groups."""
        groups = [g for g in self.parameter_groups() if g["params"]]
        if not groups:
            raise RuntimeError(f"{type(self).__name__} has no trainable parameters to optimise")
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
