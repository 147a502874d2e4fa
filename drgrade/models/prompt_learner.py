"""CoOp-style learnable prompts for the five grades, encoded by the backbone's (frozen) text tower."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from drgrade.errors import OptionError
from drgrade.models.backbones import Backbone

#: Placeholder word whose token positions the learnable vectors replace (one BPE token).
PLACEHOLDER = "X"


class PromptLearner(nn.Module):
    """``[SOT] ctx_1..ctx_n [rank_k] <grade text>. [EOT]`` for each grade.

    The context vectors are shared across grades (initialised from ``ctx_init``'s token
    embeddings, whose token count is then ``n_ctx``, or ``n_ctx`` small random values, 8 by
    default); the per-grade learnable rank token (the paper's "learnable prompt vectors for each
    DR grade") gives each grade a free vector of its own. The backbone is passed to ``forward``
    rather than held, so its parameters are not registered twice.
    """

    def __init__(
        self,
        backbone: Backbone,
        class_texts: Sequence[str],
        n_ctx: int | None = None,
        ctx_init: str | None = None,
        rank_token: bool = False,
    ):
        super().__init__()
        width = backbone.token_embeddings(backbone.tokenize(["x"])).shape[-1]
        with torch.no_grad():
            if ctx_init:
                init_tokens = backbone.tokenize([ctx_init])
                tokens_in_init = int(backbone.end_positions(init_tokens)[0]) - 1  # between start and end
                if n_ctx is not None and n_ctx != tokens_in_init:
                    raise OptionError(
                        f"n_ctx is {n_ctx} but ctx_init {ctx_init!r} has {tokens_in_init} tokens: "
                        "set n_ctx to null (taken from ctx_init) or to that number"
                    )
                n_ctx = tokens_in_init
                ctx = backbone.token_embeddings(init_tokens)[0, 1 : 1 + n_ctx].clone()
            else:
                n_ctx = 8 if n_ctx is None else n_ctx
                ctx = torch.randn(n_ctx, width) * 0.02
            slots = " ".join([PLACEHOLDER] * (n_ctx + int(rank_token)))
            tokens = backbone.tokenize([f"{slots} {text}." for text in class_texts])
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(ctx)
        self.rank = nn.Parameter(torch.randn(len(class_texts), 1, width) * 0.02) if rank_token else None
        self.register_buffer("tokens", tokens, persistent=False)

    def embeddings(self, backbone: Backbone) -> torch.Tensor:
        """The prompt token embeddings, [grades, context_length, width].

        The fixed parts (start token, grade text, end token, padding) are looked up from the
        backbone on every call rather than stored, so they always match the backbone's current
        (e.g. just loaded) token embedding.
        """
        fixed = backbone.token_embeddings(self.tokens)
        ctx = self.ctx.unsqueeze(0).expand(fixed.shape[0], -1, -1)
        learned = [ctx] + ([self.rank] if self.rank is not None else [])
        start = 1 + self.n_ctx + (1 if self.rank is not None else 0)
        return torch.cat([fixed[:, :1], *learned, fixed[:, start:]], dim=1)

    def forward(self, backbone: Backbone) -> torch.Tensor:
        """L2-normalised grade embeddings, [grades, embed_dim]."""
        return backbone.encode_prompt_embeddings(self.embeddings(backbone), self.tokens)
