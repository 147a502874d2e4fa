"""Ensemble of trained checkpoints (the paper's suggested next step): averaged probabilities."""

from __future__ import annotations

import torch
from torch import nn

from drgrade.decision.rule import ThresholdObjective
from drgrade.errors import OptionError
from drgrade.tasks.base import BaseTask
from drgrade.tasks.loading import load_task


class EnsembleCLIP(BaseTask):
    """Average the class probabilities of trained drgrade checkpoints (e.g. FCN-CLIP + ranking).

    FCN-CLIP is strongest on proliferative DR and the ranking model on severe DR (paper
    section 6); averaging probabilities lets each cover the other's weak grade. The members'
    own thresholds fit their own probabilities, not the average, so the ensemble is calibrated
    on the validation split like its members, by the same mechanism: ``drgrade fit`` on the
    ensemble calibrates its thresholds and saves them in an ensemble checkpoint (which holds
    the member paths and the thresholds, not the members' weights), and ``test`` / ``predict``
    read them from there. Its members must share the data's split.

    Args:
        checkpoints: paths of the member checkpoints (any drgrade task).
        weights: one weight per member (default equal); normalised to sum to 1.
        image_size: must equal every member's input size (linked from ``data.image_size``).
        threshold_objective: the thresholds' objective (as for the ranking model; ``none`` for argmax).
        **kwargs: ``BaseTask``'s operating-point, referral and bootstrap options.
    """

    trainable = False
    run_name = "ensemble"
    display_name = "Ensemble"

    def __init__(
        self,
        checkpoints: list[str],
        weights: list[float] | None = None,
        image_size: int = 224,
        threshold_objective: ThresholdObjective = "auto",
        **kwargs,
    ):
        if not checkpoints:
            raise OptionError(
                "EnsembleCLIP needs at least one checkpoint: --model.init_args.checkpoints '[a.ckpt, b.ckpt]'"
            )
        if weights is not None and len(weights) != len(checkpoints):
            raise OptionError(
                f"model.init_args.weights: {len(weights)} weights for {len(checkpoints)} checkpoints"
            )
        super().__init__(threshold_objective, **kwargs)
        # the members' weights live in their own checkpoints, not in the ensemble's
        self.strict_loading = False

    def configure_models(self) -> None:
        """The member list (filled in ``setup``) and the normalised weights."""
        # Members are loaded in ``setup``: LightningCLI records the hyperparameters of the module
        # it is instantiating, and would hand those to members built inside this constructor.
        self.members = nn.ModuleList()
        hp = self.hparams
        weights = torch.tensor(hp.weights or [1.0] * len(hp.checkpoints), dtype=torch.float)
        self.register_buffer("weights", weights / weights.sum(), persistent=False)

    def setup(self, stage: str) -> None:
        """Load the members once."""
        if not len(self.members):
            self.load_members()

    def load_submodules(self) -> None:
        """Load the members before the ensemble's own state (thresholds) is restored."""
        if not len(self.members):
            self.load_members()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the member paths and the ensemble's thresholds, not a copy of every member."""
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("members.")]:
            del state[key]

    def split_identities(self) -> list[tuple[str, dict]]:
        """The ensemble's own split (once calibrated) and every member's."""
        members = [
            (f"member {path}", member.split_identity)
            for path, member in zip(self.hparams.checkpoints, self.members, strict=True)
            if member.split_identity
        ]
        return super().split_identities() + members

    def load_members(self) -> None:
        """Load every member checkpoint (as data) and check its input size."""
        hp = self.hparams
        self.members.extend(load_task(path) for path in hp.checkpoints)
        for path, member in zip(hp.checkpoints, self.members, strict=True):
            size = member.hparams.get("image_size")
            if size != hp.image_size:
                raise OptionError(f"{path} was trained at {size} px but data.image_size is {hp.image_size}")
            if member.normalisation() != self.members[0].normalisation():
                raise OptionError(
                    f"{path} normalises its inputs unlike {hp.checkpoints[0]}: they cannot share a batch"
                )
            member.eval()

    def mean_logits(self, member_logits: list[torch.Tensor]) -> torch.Tensor:
        """Log of the weighted mean of the members' probabilities (each under its own rule).

        ``softmax`` of it gives that mean back, so the ensemble's own rule (temperature,
        thresholds, cuts) then decides on the mean like any model on its logits.
        """
        probs = torch.stack(
            [m.rule(z).probabilities for m, z in zip(self.members, member_logits, strict=True)]
        )
        return torch.einsum("m,mbk->bk", self.weights, probs).clamp_min(1e-12).log()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K]: the log of the members' weighted mean probability."""
        return self.mean_logits([m(images) for m in self.members])

    def attention_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The members' maps averaged with the ensemble weights, and the ensemble's logits."""
        outputs = [m.attention_maps(images) for m in self.members]
        maps = torch.einsum("m,mbhw->bhw", self.weights, torch.stack([o[0] for o in outputs]))
        return maps, self.mean_logits([o[1] for o in outputs]), "weighted mean of the members' maps"

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The members' shared normalisation (members normalised differently are refused at load)."""
        return self.members[0].normalisation()

    def split_extras(self, stage: str) -> dict:
        """The members and their weights."""
        return {"members": list(self.hparams.checkpoints), "weights": self.weights.tolist()}
