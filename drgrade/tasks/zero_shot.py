"""Zero-shot CLIP: grade embeddings from prompt templates, cosine similarity, argmax."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from drgrade.evaluation.metrics import compute_metrics
from drgrade.grades import GRADES, TEMPLATE_SETS, grade_text
from drgrade.tasks.base import BaseTask


class ZeroShotCLIP(BaseTask):
    """CLIP with no training: each template set gives one classifier; the best on the
    validation split (by ``selection_metric``) is kept and used for test and predict.

    Args:
        backbone / pretrained / image_size: see ``CLIPBackbone``.
        template_sets: names from ``drgrade.grades.TEMPLATE_SETS`` to compare (default: all).
        selection_metric: metric that picks the template set on the validation split.
        lr / weight_decay / finetune_image / image_lr: the shared training options, accepted so
            one overlay config (configs/demo.yaml) fits every model; zero-shot trains nothing.
    """

    trainable = False

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int = 224,
        template_sets: list[str] | None = None,
        selection_metric: str = "qwk",
        lr: float = 2e-4,
        weight_decay: float = 1e-3,
        finetune_image: bool = False,
        image_lr: float = 1e-5,
    ):
        unknown = set(template_sets or ()) - set(TEMPLATE_SETS)
        if unknown:
            raise ValueError(
                f"unknown template set(s) {sorted(unknown)}; choose from {sorted(TEMPLATE_SETS)}"
            )
        super().__init__(lr, weight_decay, finetune_image, image_lr)

    def configure_models(self) -> None:
        self.backbone = self.build_backbone()
        self.set_names = list(self.hparams.template_sets or TEMPLATE_SETS)
        with torch.no_grad():
            classifiers = torch.stack([self.classifier(name) for name in self.set_names])
        self.register_buffer("classifiers", classifiers)  # [sets, embed_dim, grades]
        self.register_buffer("selected", torch.tensor(-1))

    def classifier(self, set_name: str) -> torch.Tensor:
        """[embed_dim, grades]: per grade, the normalised mean of its normalised template embeddings
        (the construction of open_clip's ``build_zero_shot_classifier``)."""
        templates = TEMPLATE_SETS[set_name]
        texts = [t.format(grade_text(g, set_name)) for g in GRADES for t in templates]
        embeddings = self.backbone.encode_text(self.backbone.tokenize(texts), normalize=True)
        per_grade = embeddings.reshape(len(GRADES), len(templates), -1).mean(dim=1)
        return torch.nn.functional.normalize(per_grade, dim=-1).T

    def all_logits(self, images: torch.Tensor) -> torch.Tensor:
        """[sets, batch, grades]: CLIP logits (logit_scale * cosine) under every template set."""
        features = self.backbone.encode_image(images, normalize=True)
        return self.backbone.logit_scale * torch.einsum("bd,sdk->sbk", features, self.classifiers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding_logits(self.backbone.encode_image(images, normalize=True))

    def embedding_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of the selected template set from L2-normalised image embeddings."""
        if int(self.selected) < 0:
            self._select_fallback()
        return self.backbone.logit_scale * image @ self.classifiers[int(self.selected)]

    # -- template selection on the validation split ---------------------------------------------
    def _evaluation_step(self, batch: dict, stage: str) -> None:
        if stage != "val":
            return super()._evaluation_step(batch, stage)
        probs = self.all_logits(batch["image"]).softmax(-1)  # [sets, batch, grades]
        self.store.update(probs.permute(1, 0, 2).flatten(1), batch["label"], batch["index"])

    def _evaluate(self, stage: str, probs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> None:
        """On validation the stored probabilities hold every template set: pick the best, then
        evaluate with it like any other model."""
        if stage == "val":
            per_set = probs.reshape(len(targets), len(self.set_names), -1)
            self._select(per_set, targets)
            metric = self.hparams.selection_metric
            self.log_dict({f"val/template_{n}_{metric}": float(s or 0.0) for n, s in self.scores.items()})
            probs = per_set[:, int(self.selected)]
        super()._evaluate(stage, probs, targets, index)

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

    def _select_fallback(self) -> None:
        rank_zero_warn(f"no validation split to choose a template set: using {self.set_names[0]!r}")
        self.selected.fill_(0)

    def split_extras(self, stage: str) -> dict:
        return {
            "template_set": self.set_names[int(self.selected)],
            "template_scores": getattr(self, "scores", None),
        }
