"""Zero-shot CLIP: grade embeddings from prompt templates, cosine similarity, argmax; DME from two prompts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from drgrade.decision.choices import TIE_BREAK, choose_template_set, tie_text
from drgrade.errors import OptionError
from drgrade.evaluation.metrics import compute_metrics
from drgrade.grades import DME_STATES, GRADES, PROMPT_SETS, TEMPLATE_SETS, dme_prompts, grade_prompts
from drgrade.models.backbones import FLAIR
from drgrade.tasks.attention import GradCAMAttention, present_minus_absent
from drgrade.tasks.base import BaseTask


class ZeroShotCLIP(GradCAMAttention, BaseTask):
    """CLIP with no training.

    Each template set gives one classifier. ``drgrade fit`` scores them all on the validation
    split (by ``selection_metric``) and writes a checkpoint holding the choice, which ``test``,
    ``predict``, ``explain`` and ``export`` then use: one path for all three models.

    P(DME) is the softmax over the two DME prompts (``drgrade.grades.DME_STATES``: no macular
    edema, macular edema) under the template set chosen for the grades; its cut is fitted on
    validation like FCN-CLIP's DME head's.

    Args:
        backbone: ``RN50``, ``ViT-B-16``, ``flair``, ... (``drgrade.models.backbones``).
        pretrained: the backbone's weights: a tag (``openai``), a file, or None (random).
        image_size: input size (linked from ``data.image_size``).
        template_sets: names from ``drgrade.grades.PROMPT_SETS`` to compare (default: every
            template set, and ``flair``, FLAIR's expert descriptions, with the FLAIR backbone).
        selection_metric: metric that picks the template set on the validation split.
        text_encoder: ``flair`` only: its text model's folder (``drgrade.models.backbones.flair``).
        **kwargs: ``BaseTask``'s operating-point, referral and bootstrap options.
    """

    trainable = False
    has_dme = True
    run_name = "zero_shot"
    display_name = "Zero-shot"

    def __init__(
        self,
        backbone: str = "RN50",
        pretrained: str | None = "openai",
        image_size: int = 224,
        template_sets: list[str] | None = None,
        selection_metric: str = "qwk",
        text_encoder: str | dict | None = None,
        **kwargs,
    ):
        unknown = set(template_sets or ()) - set(PROMPT_SETS)
        if unknown:
            raise OptionError(f"unknown template set(s) {sorted(unknown)}; choose from {list(PROMPT_SETS)}")
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        """The frozen backbone and one zero-shot classifier per template set (prompt embeddings averaged)."""
        self.backbone = self.build_backbone()
        self.set_names = list(self.hparams.template_sets or self.default_sets())
        classifiers = [
            self.backbone.zero_shot_classifier([grade_prompts(g, name) for g in GRADES])
            for name in self.set_names
        ]
        self.register_buffer("classifiers", torch.stack(classifiers))  # [sets, embed_dim, grades]
        dme = [
            self.backbone.zero_shot_classifier([dme_prompts(s, name) for s in DME_STATES])
            for name in self.set_names
        ]
        self.register_buffer("dme_classifiers", torch.stack(dme))  # [sets, embed_dim, 2]: absent, present
        self.register_dme_cut()
        self.register_buffer("selected", torch.tensor(-1))
        #: Every template set's validation score (from ``select``, or the loaded checkpoint).
        self.scores: dict[str, float | None] | None = None
        #: The template sets tied on the selection metric and how the tie was broken (None: no tie).
        self.tie: dict | None = None

    def default_sets(self) -> list[str]:
        """Every template set, and FLAIR's expert descriptions when the backbone is FLAIR."""
        return list(TEMPLATE_SETS) + (["flair"] if self.hparams.backbone == FLAIR else [])

    def all_logits(self, images: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        """[sets, batch, grades]: CLIP logits (logit_scale * cosine) under every template set.

        Args:
            images: normalised images.
            embedding: their pooled embedding when already computed (not computed again).
        """
        embedding = self.embedding(images) if embedding is None else embedding
        features = F.normalize(embedding, dim=-1)
        return self.backbone.logit_scale * torch.einsum("bd,sdk->sbk", features, self.classifiers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K] of the selected template set."""
        return self.embedding_logits(self.backbone.encode_image(images, normalize=True))

    def embedding_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of the selected template set from L2-normalised image embeddings."""
        return self.backbone.logit_scale * image @ self.classifiers[self.selected_index()]

    def embedding_dme_logits(self, image: torch.Tensor) -> torch.Tensor:
        """DME logits [B] of the selected template set from L2-normalised image embeddings."""
        return present_minus_absent(
            self.backbone.logit_scale * image @ self.dme_classifiers[self.selected_index()]
        )

    def all_dme_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """[batch, sets]: DME logits of pooled embeddings under every template set."""
        features = F.normalize(embedding, dim=-1)
        return present_minus_absent(
            self.backbone.logit_scale * torch.einsum("bd,sdk->bsk", features, self.dme_classifiers)
        )

    def selected_index(self) -> int:
        """The template set chosen on validation (by ``drgrade fit``, stored in its checkpoint)."""
        if int(self.selected) < 0:
            raise OptionError(
                "zero-shot CLIP has no template set chosen yet: run `drgrade fit` with the same "
                "config first (it scores every set on the validation split and writes a checkpoint), "
                "then pass --ckpt_path best"
            )
        return int(self.selected)

    # -- template selection on the validation split ---------------------------------------------
    def evaluation_step(self, batch: dict, stage: str) -> None:
        """On validation, store every template set's logits side by side."""
        if stage != "val":
            return super().evaluation_step(batch, stage)
        embedding = self.embedding(batch["image"])
        if self.fitting_typicality(stage):
            self.keep_embeddings(batch["index"], embedding)
        logits = self.all_logits(batch["image"], embedding)  # [sets, batch, grades]
        # then every set's DME logit and the DME label (``dme_columns``, ``split_dme``)
        dme = [self.all_dme_logits(embedding), batch["dme"][:, None].to(logits)]
        columns = torch.cat([logits.permute(1, 0, 2).flatten(1), *dme], dim=1)
        self.store.update(columns, batch["label"], batch["index"], batch["group"])

    def split_logits(self, stage: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """On validation, choose the template set from every set's stored logits and keep its logits.

        The decision rule is then fitted (and the split evaluated) on the chosen set's logits, like
        any other model's.
        """
        if stage != "val":
            return logits
        per_set = logits.reshape(len(targets), len(self.set_names), -1)
        self.select(per_set, targets)
        metric = self.hparams.selection_metric
        self.log_dict({f"val/template_{n}_{metric}": float(s or 0.0) for n, s in self.scores.items()})
        return per_set[:, int(self.selected)]

    def dme_columns(self, stage: str) -> int:
        """On validation, one DME logit column per template set (the set is chosen afterwards)."""
        return len(self.set_names) if stage == "val" else 1

    def split_dme(self, stage: str, dme: torch.Tensor) -> torch.Tensor:
        """On validation, the DME logits of the template set just chosen for the grades."""
        return dme[:, int(self.selected)] if stage == "val" else dme[:, 0]

    def select(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Score every template set on the validation split and keep the best.

        Sets tied on ``selection_metric`` are told apart by ``TIE_BREAK`` (validation macro AUROC,
        which needs no decision), then by list order; the tie is recorded (``self.tie``) and shown
        in the report rather than passed off as a choice.

        Args:
            logits: [N, sets, K] logits of every set.
            targets: validation grades.
        """
        metric = self.hparams.selection_metric
        scores, secondary = {}, {}
        for i, name in enumerate(self.set_names):
            probs = logits[:, i].softmax(-1)
            values = compute_metrics(probs, targets, probs.argmax(1)).metrics
            scores[name], secondary[name] = values[metric], values[TIE_BREAK]
        self.scores = scores
        best, self.tie = choose_template_set(scores, secondary, metric)
        self.selected.fill_(self.set_names.index(best))
        table = ", ".join(f"{n}: {'undefined' if s is None else f'{s:.4f}'}" for n, s in self.scores.items())
        tied = f"; {tie_text(self.tie)}" if self.tie else ""
        rank_zero_info(f"zero-shot template sets by validation {metric}: {table}; using {best!r}{tied}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep every template set's validation score beside the choice."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["template_scores"] = self.scores
        checkpoint["template_tie"] = self.tie

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the validation scores of the template sets."""
        super().on_load_checkpoint(checkpoint)
        self.scores = checkpoint.get("template_scores")
        self.tie = checkpoint.get("template_tie")

    def split_extras(self, stage: str) -> dict:
        """The chosen template set and every set's validation score."""
        return {
            "template_set": self.set_names[self.selected_index()],
            "template_scores": self.scores,
            "template_tie": self.tie,
        }
