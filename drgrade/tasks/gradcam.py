"""Attention maps of the CLIP-logit tasks (zero-shot, ranking): Grad-CAM at the last ResNet stage."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from drgrade.evaluation.attention import grad_cam


class GradCAMAttention:
    """Attention maps for tasks whose logits come from pooled CLIP image embeddings.

    The task provides ``embedding_logits``; the map is Grad-CAM through ``attnpool`` of the image tower's
    layer4 feature map.
    """

    def attention_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(Grad-CAM maps [B, S, S], logits [B, K], method) of the predicted grade."""
        visual = self.backbone.visual

        def pooled_scores(activations: torch.Tensor) -> torch.Tensor:
            return self.embedding_logits(F.normalize(visual.attnpool(activations), dim=-1))

        maps, logits = grad_cam(
            lambda x: self.backbone.feature_maps(x, ("layer4",))["layer4"], pooled_scores, images
        )
        return maps, logits, "Grad-CAM (layer4)"
