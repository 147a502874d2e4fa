"""The task base classes.

``BaseTask``: the evaluation, decision rule and prediction step every DR model shares, and
``TrainableTask``: the optimiser and training step of the models that learn.

Subclasses build their networks in ``configure_models``, their loss in ``configure_losses``, and
implement ``forward(images) -> logits`` and ``attention_maps(images) -> (maps, logits, method)``.
Everything between logits and a decision is ``self.rule`` (``drgrade.decision.DecisionRule``):
fitted on the validation split's logits, applied everywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from scipy.special import softmax
from torch import nn

from drgrade.callbacks.resume import confine_resumed_state
from drgrade.decision.choices import choice_text
from drgrade.decision.rule import DecisionRule, ThresholdObjective
from drgrade.decision.typicality import QUANTILE, Typicality
from drgrade.errors import OptionError
from drgrade.evaluation.bootstrap import BootstrapSpec
from drgrade.evaluation.dme import dme_section, fit_dme_cut
from drgrade.evaluation.kappa import qwk
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from drgrade.evaluation.store import PredictionStore
from drgrade.models.backbones import Backbone, build_backbone
from drgrade.models.losses import masked_dme_loss
from drgrade.predictions import operating_cut
from drgrade.provenance import code_version, training_sources, weights_record
from drgrade.runs import (
    CHOICE_KEY,
    QUICK_GELU_KEY,
    SCORE_KEY,
    SPLIT_KEY,
    TASK_KEY,
    TEXT_ENCODER_KEY,
    TRAINING_KEY,
    architecture_options,
)
from drgrade.tasks.tta import augmented_logits

#: Scalars logged every validation/test epoch (the rest go to metrics.json).
LOGGED = ("accuracy", "qwk", "auroc_macro", "macro_f1", "macro_recall", "off_by_two_plus")


class BaseTask(L.LightningModule):
    """Shared LightningModule for DR grading.

    Args:
        threshold_objective: the decision rule's per-class thresholds: ``none`` for argmax, or
            ``youden`` / ``f1`` / ``qwk`` / ``auto`` (the one with the best cross-fitted validation
            QWK), fitted on every validation pass of ``fit`` (so each checkpoint carries the
            rule matching its weights). Test and predict then decide by ``argmax_k p_k / t_k``.
        fit_rule_on_validate: also refit the decision rule during ``drgrade validate``.
        target_sensitivity: the referral operating points' sensitivity target on validation
            (referable and vision-threatening DR, each with its own cut).
        target_specificity: the high-specificity operating points' target on validation.
        refer_fraction: the share of validation images whose predictive entropy marks them for
            a human grader; the entropy cut travels in the checkpoint to ``predict``.
        bootstrap_resamples: patient-level bootstrap resamples for the confidence intervals of
            a validate/test run (0: none).
        tta: test-time augmentation of every evaluation, prediction and export: ``none``,
            ``flip`` (logits averaged over the image and its left-right mirror), ``flip4`` (and
            the up-down mirrors) or ``rot4`` (the four right-angle turns); ``drgrade.tasks.tta``.
            Set it when fitting too, so the decision rule is fitted on the same logits.
        typicality_images: training photographs (evenly spaced through the split) whose pooled
            embeddings the typicality check is fitted on at each fitting validation pass
            (``drgrade.decision.typicality``; 0 turns the check off).

    Every fitting validation pass also fits a temperature (NLL on validation) applied to the
    logits before thresholds, operating points and export: the whole rule is ``self.rule``; and
    the typicality check (``self.typicality``), which refuses inputs unlike any training photograph.
    """

    trainable: ClassVar[bool] = False
    #: Whether the model grades DR (the prediction files' schema); the quality model does not.
    grades_dr: ClassVar[bool] = True
    #: Whether the model has a DME output (``forward_with_dme``; its cut is the ``dme_cut`` buffer).
    has_dme: ClassVar[bool] = False
    #: Folder name of this model's runs (``runs/<run_name>``) and its column in reports.
    run_name: ClassVar[str] = "model"
    display_name: ClassVar[str] = "Model"
    #: What this model's probabilities already are before its own temperature (empty: plain softmax
    #: of its logits), so a calibration "before" is never read as uncalibrated when it is not.
    before_temperature: ClassVar[str] = ""

    def __init__(
        self,
        threshold_objective: ThresholdObjective = "none",
        fit_rule_on_validate: bool = False,
        target_sensitivity: float = 0.9,
        target_specificity: float = 0.95,
        refer_fraction: float = 0.1,
        bootstrap_resamples: int = 2000,
        tta: Literal["none", "flip", "flip4", "rot4"] = "none",
        typicality_images: int = 2000,
    ):
        if bootstrap_resamples < 0:
            raise OptionError(f"model.init_args.bootstrap_resamples must be >= 0, got {bootstrap_resamples}")
        if typicality_images < 0:
            raise OptionError(f"model.init_args.typicality_images must be >= 0, got {typicality_images}")
        super().__init__()
        # collects the init args of the whole subclass chain, so configure_models can read them
        self.save_hyperparameters()
        self.rule = DecisionRule(threshold_objective, target_sensitivity, target_specificity, refer_fraction)
        self.store = PredictionStore()
        self.typicality = Typicality()
        #: (index, pooled embedding) of the validation images of a fitting pass, for ``typicality``.
        self.embeddings: list[tuple[torch.Tensor, torch.Tensor]] = []
        #: The latest evaluation of each split ("val", "test"), read by ``EvaluationWriter``.
        self.results: dict[str, SplitResult] = {}
        self.criterion: nn.Module | None = None
        #: The split the loaded checkpoint was fitted on (None before fitting or loading).
        self.split_identity: dict | None = None
        #: The pretrained weights the backbone started from (``provenance.weights_record``).
        self.weights_record: dict | None = None
        #: The epoch the loaded checkpoint was saved at (None: not loaded, or not trained).
        self.checkpoint_epoch: int | None = None
        #: The sources the checkpoint was fitted on, each with whether it was synthetic (model card).
        self.training_data: dict[str, bool] | None = None
        self._refitting = False
        self.configure_models()
        self.configure_losses()

    # -- hooks for subclasses -------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build the networks (called from ``__init__``)."""
        raise NotImplementedError

    def build_backbone(self, finetune_image: bool = False) -> Backbone:
        """The backbone of the ``backbone`` / ``pretrained`` / ``text_encoder`` / ``image_size`` options.

        Args:
            finetune_image: leave the image tower trainable (the text tower is always frozen).
        """
        hp = self.hparams
        backbone = build_backbone(
            hp.backbone,
            hp.pretrained,
            hp.image_size,
            hp.get("text_encoder"),
            freeze_image=not finetune_image,
            freeze_text=True,
        )
        record = weights_record(hp.backbone, hp.pretrained)
        self.weights_record = record and record | {"pretraining": list(backbone.pretraining_datasets)}
        return backbone

    def configure_losses(self) -> None:
        """Set ``self.criterion`` (called from ``__init__``; ``setup`` may refine it with data)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] of normalised images [B, 3, S, S]."""
        raise NotImplementedError

    @property
    def example_input_array(self) -> torch.Tensor:
        """One blank image at the input size: Lightning's model summary measures FLOPs on it.

        Without one its table ends in "Total FLOPs: 0", which reads as a measurement.
        """
        size = self.hparams.get("image_size") or 224
        return torch.zeros(1, 3, size, size)

    def forward_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Grade logits [B, K] and, with a DME output, the DME logits [B] (else None), in one pass."""
        return self(images), None

    def embed_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``forward_with_dme``'s outputs and the pooled embedding (tasks override it to share one pass)."""
        logits, dme = self.forward_with_dme(images)
        return logits, dme, self.embedding(images)

    def register_dme_cut(self) -> None:
        """The validation cut on P(DME) (``dme_cut``, NaN until fitted) of a task with a DME output."""
        self.register_buffer("dme_cut", torch.tensor(float("nan")))

    def clinical_cuts(self) -> dict[str, float | None]:
        """The cuts a prediction row needs beside the thresholds (``checked_decisions``): vtDR and DME."""
        return {"vtdr_cut": operating_cut(self.rule.describe(), "vtdr"), "dme_cut": self.dme_cut_value()}

    def dme_cut_value(self) -> float | None:
        """The validation DME cut (None: no DME output, or validation had no DME eye to fit it on)."""
        cut = float(self.dme_cut) if self.has_dme else float("nan")
        return None if cut != cut else cut

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled embedding [B, D] that the typicality check measures."""
        return self.backbone.encode_image(images, normalize=False)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, pooled embedding); tasks that get both from one pass override this."""
        return self(images), self.embedding(images)

    def attention_maps(
        self, images: torch.Tensor, grade: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Where the model looks: (maps [B, S, S] in [0, 1], logits [B, K] of the same pass, method).

        Args:
            images: normalised images.
            grade: the grade per image whose evidence is mapped (default: the one ``self.rule``
                decides, the grade shown beside the map); an ensemble passes its own decision.
        """
        raise NotImplementedError(f"{type(self).__name__} has no attention map")

    def load_submodules(self) -> None:
        """Build parts that come from elsewhere before a state dict is loaded (the ensemble's members)."""

    def split_logits(self, stage: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The logits a split is decided on, from those stored (zero-shot chooses its template set here)."""
        return logits

    def split_extras(self, stage: str) -> dict:
        """Extra entries for a split's metrics.json (e.g. the chosen template set).

        Args:
            stage: ``val`` or ``test``.
        """
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the task class (so ``load_task`` can rebuild any checkpoint) and record the split."""
        checkpoint[TASK_KEY] = type(self).__name__
        attached = self.attached()
        identity = self.trainer.datamodule.split_identity if attached and self.trainer.datamodule else None
        checkpoint[SPLIT_KEY] = identity or self.split_identity
        checkpoint[CHOICE_KEY] = self.rule.choice
        checkpoint[SCORE_KEY] = self.validation_score() if attached else None
        if hasattr(getattr(self, "backbone", None), "text_files"):  # FLAIR: its text tower's definition
            checkpoint[TEXT_ENCODER_KEY] = self.backbone.text_files
        if hasattr(getattr(self, "backbone", None), "quick_gelu"):  # open_clip: the activation it ran
            checkpoint[QUICK_GELU_KEY] = self.backbone.quick_gelu
        checkpoint[TRAINING_KEY] = {
            "weights": self.weights_record,
            "code": code_version(),
            "trained": self.trainable,
            "seed": os.environ.get("PL_GLOBAL_SEED"),
            "data": training_sources(self.trainer.datamodule) if attached else self.training_data,
        }

    def attached(self) -> bool:
        """Whether a trainer runs this task now (a checkpoint can be saved outside one, in tests)."""
        try:
            return self.trainer is not None
        except RuntimeError:
            return False

    def validation_score(self) -> dict | None:
        """The monitored validation score now (what ``--ckpt_path best`` compares runs by)."""
        callback = self.trainer.checkpoint_callback
        watched = callback is not None and callback.monitor
        monitor, mode = (callback.monitor, callback.mode) if watched else ("val/selection_qwk", "max")
        value = self.trainer.callback_metrics.get(monitor)
        return None if value is None else {"monitor": monitor, "mode": mode, "value": float(value)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Remember the split the checkpoint was fitted on and how its thresholds were chosen.

        When a trainer resumes from it, the checkpoint callbacks' saved paths are confined to this
        run's checkpoint folders first (Lightning restores callbacks after this hook), so a crafted
        file cannot make drgrade delete anything outside the run.
        """
        if self.attached():
            confine_resumed_state(checkpoint, self.trainer.callbacks)
        self.split_identity = checkpoint.get(SPLIT_KEY)
        self.rule.choice = checkpoint.get(CHOICE_KEY)
        self.weights_record = (checkpoint.get(TRAINING_KEY) or {}).get("weights")
        self.training_data = (checkpoint.get(TRAINING_KEY) or {}).get("data")
        self.checkpoint_epoch = checkpoint.get("epoch") if self.trainable else None
        backbone = getattr(self, "backbone", None)
        if isinstance(checkpoint.get(QUICK_GELU_KEY), bool) and hasattr(backbone, "quick_gelu"):
            backbone.quick_gelu = checkpoint[QUICK_GELU_KEY]  # rebuilt without the weights file it came from

    @classmethod
    def options_from_checkpoint(cls, options: dict, checkpoint: dict, path: Path) -> dict:
        """The options ``load_task`` builds this task with, from those ``checkpoint`` recorded.

        A FLAIR text tower is rebuilt from the configuration and vocabulary the checkpoint stored
        (its weights are in the state dict), so no folder is read.
        """
        return options | architecture_options(checkpoint)

    def split_identities(self) -> list[tuple[str, dict]]:
        """(what, split identity) of every fitted part of this model (empty when none is known)."""
        return [(type(self).__name__ + " checkpoint", self.split_identity)] if self.split_identity else []

    def export_module(self) -> nn.Module:
        """The module ONNX export traces (override to fold constants in).

        images -> logits, or (logits, DME logits) for a task with a DME output (``has_dme``).
        """
        return WithDme(self) if self.has_dme else self

    def decision_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits decisions are made on: ``forward``'s, averaged over the ``tta`` views."""
        return augmented_logits(self, images, self.hparams.tta)

    def decide_and_embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decision logits and the pooled embedding (of the image as given); one pass without tta."""
        if self.hparams.tta == "none":
            return self.embed(images)
        return self.decision_logits(images), self.embedding(images)

    def decision_outputs(
        self, images: torch.Tensor, embed: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``decision_logits``, the DME logits and the pooled embedding, in as few passes as may be.

        The DME logits are the image's own (no TTA for DME), None without a DME output; the embedding
        (what the typicality check measures) only when ``embed``, else None.
        """
        if not self.has_dme:
            if not embed:
                return self.decision_logits(images), None, None
            logits, embedding = self.decide_and_embed(images)
            return logits, None, embedding
        if embed:
            logits, dme, embedding = self.embed_with_dme(images)
        else:
            (logits, dme), embedding = self.forward_with_dme(images), None
        return augmented_logits(self, images, self.hparams.tta, logits), dme, embedding

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) per channel, on a 0-1 scale, that this model's inputs are normalised with."""
        return self.backbone.normalisation

    def bootstrap(self) -> BootstrapSpec:
        """How the confidence intervals of an evaluation are drawn."""
        return BootstrapSpec(resamples=self.hparams.bootstrap_resamples)

    # -- steps ----------------------------------------------------------------------------------
    def evaluation_step(self, batch: dict, stage: str) -> None:
        """Store one batch's logits (and log its loss when the task has one)."""
        fitting = self.fitting_typicality(stage)
        logits, dme, embedding = self.decision_outputs(batch["image"], embed=fitting)
        if fitting:
            self.keep_embeddings(batch["index"], embedding)
        if self.criterion is not None:
            loss = self.criterion(logits, batch["label"])
            self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(logits))
        if dme is not None:  # the DME logit and label travel as two more columns (``finish_split``)
            logits = torch.cat([logits, dme[:, None], batch["dme"][:, None].to(logits)], dim=1)
        self.store.update(logits, batch["label"], batch["index"], batch["group"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """One validation batch."""
        self.evaluation_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """One test batch."""
        self.evaluation_step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """The rule's decisions (and P(DME) with a DME output) on one batch, for ``PredictionWriter``.

        Inputs unlike any training photograph get the reason instead of a grade.
        """
        logits, dme, embedding = self.decision_outputs(batch["image"], embed=True)
        atypical = self.typicality.reasons(self.typicality(embedding))
        return {
            "index": batch["index"].cpu(),
            "outputs": [o.cpu() for o in self.rule(logits)],
            "p_dme": None if dme is None else torch.sigmoid(dme.float()).cpu(),
            "error": [error or reason for error, reason in zip(batch["error"], atypical, strict=True)],
            "quality": batch["quality"].cpu() if "quality" in batch else None,
            "digest": batch["digest"],
            "exam": batch["exam"],
        }

    # -- split-level evaluation -----------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        """Evaluate the whole validation split at once."""
        self.finish_split("val")

    def on_test_epoch_end(self) -> None:
        """Evaluate the whole test split at once."""
        self.finish_split("test")

    def should_fit_rule(self, stage: str) -> bool:
        """Fit the rule on validation passes of ``fit`` (and of ``validate`` when asked)."""
        if stage != "val" or self.trainer.sanity_checking:
            return False
        fn = self.trainer.state.fn
        refit = self.hparams.fit_rule_on_validate or self._refitting
        return fn == TrainerFn.FITTING or (fn == TrainerFn.VALIDATING and refit)

    def fitting_typicality(self, stage: str) -> bool:
        """Whether this pass collects validation embeddings to fit the typicality check."""
        return self.hparams.typicality_images > 0 and self.attached() and self.should_fit_rule(stage)

    def keep_embeddings(self, index: torch.Tensor, embedding: torch.Tensor) -> None:
        """Keep a validation batch's pooled embeddings (by image index) for the typicality fit."""
        self.embeddings.append((index.detach(), embedding.detach().float()))

    def fit_typicality(self) -> None:
        """Fit the typicality check: training embeddings (mean, covariance), validation ones (the cut).

        The validation embeddings were kept during the pass (every rank's, each image once);
        the training photographs are read once more, unaugmented, up to ``typicality_images``.
        """
        index = torch.cat([i for i, _ in self.embeddings])
        embedding = torch.cat([e for _, e in self.embeddings])
        self.embeddings = []
        datamodule = self.trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "typicality_loader"):
            return  # validation batches given without drgrade's data: no training split to fit on
        if self.trainer.world_size > 1:  # DDP pads every rank to the same count: gather, then once each
            index, embedding = self.all_gather(index).flatten(0, 1), self.all_gather(embedding).flatten(0, 1)
        order = {int(i): row for row, i in enumerate(index.tolist())}
        validation = embedding[list(order.values())]
        loader = datamodule.typicality_loader(self.hparams.typicality_images)
        training = torch.cat([self.embedding(batch["image"].to(self.device)).float() for batch in loader])
        self.typicality.fit(training, validation)
        if self.trainer.state.fn == TrainerFn.FITTING:
            # refitted every epoch so the best checkpoint carries its own: a curve, not a console line
            if self.typicality.fitted:
                self.log("val/typicality_cut", float(self.typicality.cut), sync_dist=False)
            return
        cut = f"{float(self.typicality.cut):.3g}" if self.typicality.fitted else "not fitted (too few images)"
        self.print(
            f"typicality check: fitted on {len(training)} training photographs; cut {cut} "
            f"(the {QUANTILE:.1%} quantile of the distances of {len(validation)} validation photographs)"
        )

    @contextmanager
    def refitting(self) -> Iterator[None]:
        """Within it, a ``validate`` pass fits the decision rule (``Engine.fit`` of an untrained model)."""
        self._refitting = True
        try:
            yield
        finally:
            self._refitting = False

    def saving_to(self, checkpoint: Path) -> None:
        """Called before the engine saves this model, fitted without training, at ``checkpoint``."""

    def finish_split(self, stage: str) -> None:
        """Gather the split's stored logits (all ranks) and evaluate them."""
        logits, targets, index, groups = self.store.compute()
        self.store.reset()
        if self.trainer.sanity_checking or len(targets) == 0:
            return
        dme = None
        if self.has_dme:  # the DME columns evaluation_step appended: logit(s), then the label
            width = self.dme_columns(stage) + 1
            logits, dme = logits[:, :-width], logits[:, -width:]
        self.evaluate(stage, logits, targets, index, groups)
        if dme is not None:
            self.evaluate_dme(stage, self.split_dme(stage, dme[:, :-1]), dme[:, -1].long())

    def dme_columns(self, stage: str) -> int:
        """How many DME logit columns ``evaluation_step`` stores for ``stage`` (zero-shot: one per set)."""
        return 1

    def split_dme(self, stage: str, dme: torch.Tensor) -> torch.Tensor:
        """The DME logits [N] a split is evaluated on, from the stored columns (after ``split_logits``)."""
        return dme[:, 0]

    def evaluate_dme(self, stage: str, logits: torch.Tensor, truth: torch.Tensor) -> None:
        """P(DME) of the split, its cut fitted on validation when the rule is, and its figures.

        Args:
            stage: ``val`` or ``test``.
            logits: the DME logits [N].
            truth: 1 / 0, negative where the source grades no DME [N].
        """
        p_dme = torch.sigmoid(logits.double())
        target = self.rule.targets["sensitivity"]
        if self.should_fit_rule(stage):
            self.dme_cut.fill_(fit_dme_cut(p_dme.numpy(), truth.numpy(), target))
        result = self.results[stage]
        result.p_dme = p_dme.float()
        result.extras["dme"] = dme_section(p_dme.numpy(), truth.numpy(), self.dme_cut_value(), target)

    def evaluate(
        self,
        stage: str,
        logits: torch.Tensor,
        targets: torch.Tensor,
        index: torch.Tensor,
        groups: torch.Tensor,
    ) -> None:
        """Fit the rule when due, decide, compute the split's metrics, log scalars, keep the result."""
        logits = self.split_logits(stage, logits.cpu(), targets)
        if self.embeddings:
            with torch.no_grad():
                self.fit_typicality()
        fitting = self.should_fit_rule(stage)
        outputs = self.rule.fit(logits, targets, groups) if fitting else self.rule(logits)
        if fitting and self.rule.choice and self.trainer.state.fn != TrainerFn.FITTING:
            # during fit each epoch chooses again: the best checkpoint's choice reaches the report
            rank_zero_info(f"{type(self).__name__} threshold_objective auto: {choice_text(self.rule.choice)}")
        probs, preds = outputs.probabilities, outputs.grade
        thresholded = bool(self.rule.thresholded)
        evaluation = compute_metrics(probs, targets, preds)
        argmax = compute_metrics(probs, targets, probs.argmax(1)) if thresholded else None
        extras = self.split_extras(stage)
        if self.hparams.tta != "none":
            extras["tta"] = self.hparams.tta
        if thresholded or self.rule.choice:
            extras["threshold_choice"] = {"setting": self.rule.objective, **(self.rule.choice or {})}
        self.results[stage] = SplitResult(
            stage,
            logits,
            outputs,
            self.rule.operating_flags(probs),
            targets,
            index,
            groups,
            evaluation,
            argmax,
            self.rule.thresholds.tolist() if thresholded else None,
            extras,
        )
        values = {f"{stage}/{name}": evaluation.metrics[name] for name in LOGGED}
        if argmax is not None:
            values |= {f"{stage}/argmax_{name}": argmax.metrics[name] for name in ("accuracy", "qwk")}
        if stage == "val":
            values["val/selection_qwk"] = self.selection_qwk(probs, targets, preds, groups)
        # identical on every rank (computed from synced states): the sync averages equal values
        self.log_dict({k: float("nan") if v is None else v for k, v in values.items()}, sync_dist=True)

    def selection_qwk(
        self, probs: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor, groups: torch.Tensor
    ) -> float:
        """Return the validation score checkpoints are chosen by.

        It is never computed with thresholds fitted to the images it scores: while fitting a
        thresholding task, it is the QWK of cross-fitted decisions (thresholds fitted on one half
        of the split, by patient, decide the other half); otherwise the QWK of the decisions made.

        Args:
            probs: validation probabilities.
            targets: validation grades.
            preds: the decisions the metrics used.
            groups: each image's patient code.
        """
        if self.trainer.state.fn == TrainerFn.FITTING:
            preds = self.rule.selection_grades(probs, targets, groups)
        return qwk(targets=targets, preds=preds, undefined=0.0)

    def uncalibrated_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax(logits) without the fitted temperature (for the calibration error before it)."""
        return torch.from_numpy(softmax(logits.double().numpy(), axis=1)).float()


class WithDme(nn.Module):
    """images -> (grade logits, DME logits) of a task with a DME output: what ONNX export traces."""

    def __init__(self, task: BaseTask):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's ``forward_with_dme``."""
        return self.task.forward_with_dme(images)


class TrainableTask(BaseTask):
    """A task with parameters to learn: AdamW (Table 2), optional image-tower fine-tuning.

    Args:
        lr: AdamW learning rate (Table 2: 2e-4).
        weight_decay: AdamW weight decay (Table 2: 1e-3).
        finetune_image: train the CLIP image tower too, at ``image_lr``.
        image_lr: the image tower's learning rate (pretrained towers want a much smaller step than
            new heads). A random-weight backbone (the demo) needs fine-tuning, since random frozen
            features carry little signal.
        threshold_objective: see ``BaseTask``.
        **kwargs: ``BaseTask``'s other options (``fit_rule_on_validate``, the operating-point
            targets, ``refer_fraction``, ``bootstrap_resamples``).
    """

    trainable = True

    def __init__(
        self,
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        finetune_image: bool = False,
        image_lr: float = 1e-5,
        threshold_objective: ThresholdObjective = "none",
        **kwargs,
    ):
        for name, value in (("lr", lr), ("image_lr", image_lr), ("weight_decay", weight_decay)):
            if not value >= 0:
                raise OptionError(f"model.init_args.{name} must be >= 0, got {value}")
        super().__init__(threshold_objective, **kwargs)
        self.lr = lr
        self.weight_decay = weight_decay

    def build_backbone(self, finetune_image: bool | None = None) -> Backbone:
        """The CLIP wrapper with the image tower trainable when ``finetune_image`` is set.

        Args:
            finetune_image: override the ``finetune_image`` option.
        """
        return super().build_backbone(
            self.hparams.finetune_image if finetune_image is None else finetune_image
        )

    #: Weight of the masked DME loss beside the grade loss (tasks with a DME output set it).
    dme_weight: float = 0.0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Loss of one (resampled, augmented) training batch; plus the masked DME loss with a DME output."""
        logits, dme = self.forward_with_dme(batch["image"])
        loss = self.criterion(logits, batch["label"])
        if dme is not None:
            loss = loss + self.dme_weight * masked_dme_loss(dme, batch["dme"])
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
