"""Zero-shot CLIP: grade embeddings from prompt templates, cosine similarity, argmax."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from open_clip import build_zero_shot_classifier

from drgrade.errors import OptionError
from drgrade.evaluation.metrics import compute_metrics
from drgrade.grades import GRADES, TEMPLATE_SETS, grade_text
from drgrade.tasks.base import BaseTask
from drgrade.tasks.gradcam import GradCAMAttention


class ZeroShotCLIP(GradCAMAttention, BaseTask):
    """CLIP with no training.

    Each template set gives one classifier; the best on the validation split (by ``selection_metric``) is
    kept and used for test and predict.

    Args:
        backbone: the open_clip architecture (see ``CLIPBackbone``).
        pretrained: an open_clip weights tag, a local checkpoint path, or None.
        image_size: input size (linked from ``data.image_size``).
        template_sets: names from ``drgrade.grades.TEMPLATE_SETS`` to compare (default: all).
        selection_metric: metric that picks the template set on the validation split.

    """

    trainable = False
    run_name = "zero_shot"
    display_name = "Zero-shot"

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int = 224,
        template_sets: list[str] | None = None,
        selection_metric: str = "qwk",
    ):
        unknown = set(template_sets or ()) - set(TEMPLATE_SETS)
        if unknown:
            raise OptionError(
                f"unknown template set(s) {sorted(unknown)}; choose from {sorted(TEMPLATE_SETS)}"
            )
        super().__init__()

    def configure_models(self) -> None:
        """The frozen backbone and one open_clip zero-shot classifier per template set."""
        self.backbone = self.build_backbone()
        self.set_names = list(self.hparams.template_sets or TEMPLATE_SETS)
        classifiers = [
            build_zero_shot_classifier(
                self.backbone.clip,
                self.backbone.tokenizer,
                [grade_text(g, name) for g in GRADES],
                TEMPLATE_SETS[name],
                num_classes_per_batch=None,
            )
            for name in self.set_names
        ]
        self.register_buffer("classifiers", torch.stack(classifiers))  # [sets, embed_dim, grades]
        self.register_buffer("selected", torch.tensor(-1))

    def all_logits(self, images: torch.Tensor) -> torch.Tensor:
        """[sets, batch, grades]: CLIP logits (logit_scale * cosine) under every template set."""
        features = self.backbone.encode_image(images, normalize=True)
        return self.backbone.logit_scale * torch.einsum("bd,sdk->sbk", features, self.classifiers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] of the selected template set."""
        return self.embedding_logits(self.backbone.encode_image(images, normalize=True))

    def embedding_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of the selected template set from L2-normalised image embeddings."""
        return self.backbone.logit_scale * image @ self.classifiers[self.selected_index()]

    def selected_index(self) -> int:
        """The chosen template set; the first (with a warning) when none was chosen on validation."""
        if int(self.selected) < 0:
            rank_zero_warn(f"no template set chosen on validation: using {self.set_names[0]!r}")
            return 0
        return int(self.selected)

    # -- template selection on the validation split ---------------------------------------------
    def evaluation_step(self, batch: dict, stage: str) -> None:
        """On validation, store every template set's probabilities side by side."""
        if stage != "val":
            return super().evaluation_step(batch, stage)
        probs = self.all_logits(batch["image"]).softmax(-1)  # [sets, batch, grades]
        self.store.update(probs.permute(1, 0, 2).flatten(1), batch["label"], batch["index"])

    def evaluate(self, stage: str, probs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> None:
        """Evaluate a split; on validation, first choose the template set.

        The stored validation probabilities hold every template set: pick the best, then evaluate with it like
        any other model.
        """
        if stage == "val":
            per_set = probs.reshape(len(targets), len(self.set_names), -1)
            self._select(per_set, targets)
            metric = self.hparams.selection_metric
            self.log_dict({f"val/template_{n}_{metric}": float(s or 0.0) for n, s in self.scores.items()})
            probs = per_set[:, int(self.selected)]
        super().evaluate(stage, probs, targets, index)

    def _select(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        metric = self.hparams.selection_metric
        self.scores = {
            name: compute_metrics(probs[:, i], targets, probs[:, i].argmax(1)).metrics[metric]
            for i, name in enumerate(self.set_names)
        }
        best = max(range(len(self.set_names)), key=lambda i: self.scores[self.set_names[i]] or -1.0)
        self.selected.fill_(best)
        table = ", ".join(f"{n}: {s:.4f}" for n, s in self.scores.items())
        rank_zero_info(
            f"zero-shot template sets by validation {metric}: {table}; using {self.set_names[best]!r}"
        )

    def on_test_start(self) -> None:
        """Testing without a prior validate still selects on the validation split."""
        if int(self.selected) < 0:
            self.select_on(self.trainer.datamodule)

    def select_on(self, datamodule) -> None:
        """Choose the template set on ``datamodule``'s validation split, when it has one."""
        if "val" not in getattr(datamodule, "datasets", {}):
            return
        with torch.no_grad():
            batches = [
                (self.all_logits(b["image"].to(self.device)).softmax(-1).permute(1, 0, 2).cpu(), b["label"])
                for b in datamodule.val_dataloader()
            ]
        self._select(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))

    def split_extras(self, stage: str) -> dict:
        """The chosen template set and every set's validation score."""
        return {
            "template_set": self.set_names[self.selected_index()],
            "template_scores": getattr(self, "scores", None),
        }
