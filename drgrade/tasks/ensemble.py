"""Ensemble of trained checkpoints (the paper's suggested next step): averaged probabilities."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from drgrade.decision.rule import ThresholdObjective
from drgrade.errors import CheckpointError, OptionError
from drgrade.files import archive_problem, file_sha256
from drgrade.models.backbones import normalisation_of
from drgrade.runs import peek_checkpoint
from drgrade.tasks.base import BaseTask
from drgrade.tasks.loading import load_task

#: The checkpoint entry listing the members an ensemble's rule was fitted on (path, SHA-256).
MEMBERS_KEY = "drgrade_members"


def recorded_members(checkpoint: dict, path: str | Path) -> list[str]:
    """The member files an ensemble checkpoint names, found relative to its own folder first.

    Relative to the ensemble checkpoint as recorded when found there (so a moved runs folder
    still works), else at the path given when it was fitted.

    Args:
        checkpoint: the loaded ensemble checkpoint.
        path: its file.
    """
    home = Path(path).parent
    found = []
    for entry in members_of(checkpoint, path):
        beside = home / entry["relative"]
        found.append(str(beside) if beside.is_file() else entry["path"])
    return found


def members_of(checkpoint: dict, path: str | Path) -> list[dict]:
    """The recorded members (path, relative path, SHA-256); refuses a checkpoint without them."""
    entries = checkpoint.get(MEMBERS_KEY)
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and {"path", "relative", "sha256"} <= set(e) for e in entries
    ):
        raise CheckpointError(
            f"{path}: an ensemble checkpoint without its members' digests (written by an older "
            "drgrade); fit the ensemble again: drgrade fit --config configs/ensemble.yaml ..."
        )
    return entries


def check_members(checkpoint: dict, paths: list[str], digests: list[str], where: str = "") -> None:
    """Refuse member files whose content is not what the ensemble's rule was fitted on.

    A re-fit member under the same path would otherwise be paired silently with the old
    temperature, thresholds and cuts.

    Args:
        checkpoint: the loaded ensemble checkpoint.
        paths: the member files given now.
        digests: their SHA-256.
        where: the ensemble checkpoint's path, for messages.
    """
    recorded = members_of(checkpoint, where)
    if len(recorded) != len(paths):
        raise CheckpointError(
            f"{where}: the ensemble was fitted on {len(recorded)} members "
            f"({', '.join(e['path'] for e in recorded)}); {len(paths)} given"
        )
    for path, digest, entry in zip(paths, digests, recorded, strict=True):
        if digest != entry["sha256"]:
            raise CheckpointError(
                f"{where}: member {path} is not the checkpoint the ensemble was fitted on "
                f"({entry['path']}, SHA-256 {entry['sha256'][:16]}..., this file {digest[:16]}...). "
                "Pass the original members, or fit the ensemble again on these."
            )


class EnsembleCLIP(BaseTask):
    """Average the class probabilities of trained drgrade checkpoints (e.g. FCN-CLIP + ranking).

    FCN-CLIP is strongest on proliferative DR and the ranking model on severe DR (paper
    section 6); averaging probabilities lets each cover the other's weak grade. The members'
    own thresholds fit their own probabilities, not the average, so the ensemble is calibrated
    on the validation split like its members, by the same mechanism: ``drgrade fit`` on the
    ensemble calibrates its thresholds and saves them in an ensemble checkpoint (which holds
    the member paths and the thresholds, not the members' weights), and ``test`` / ``predict``
    read them from there. Its members must share the data's split.

    P(DME) is the weighted mean of the P(DME) of the members that have a DME output (their
    weights renormalised over them); the ensemble fits its own DME cut on validation.

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
    before_temperature = "after each member's own temperature"

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
        self.register_dme_cut()  # used when a member has a DME output (``has_dme``)

    @property
    def has_dme(self) -> bool:  # type: ignore[override]
        """Whether any member has a DME output (known once the members are loaded)."""
        return any(member.has_dme for member in self.members)

    def setup(self, stage: str) -> None:
        """Load the members once."""
        if not len(self.members):
            self.load_members()

    def load_submodules(self) -> None:
        """Load the members before the ensemble's own state (thresholds) is restored."""
        if not len(self.members):
            self.load_members()

    def saving_to(self, checkpoint: Path) -> None:
        """The checkpoint records each member relative to its own folder."""
        self.checkpoint_home = checkpoint.parent

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep each member's path and SHA-256 and the ensemble's rule, not a copy of every member."""
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("members.")]:
            del state[key]
        home = Path(getattr(self, "checkpoint_home", Path.cwd())).resolve()
        checkpoint[MEMBERS_KEY] = [
            {"path": path, "relative": os.path.relpath(Path(path).resolve(), home), "sha256": digest}
            for path, digest in zip(self.hparams.checkpoints, self.member_digests, strict=True)
        ]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse members other than those the ensemble's rule was fitted on."""
        super().on_load_checkpoint(checkpoint)
        check_members(checkpoint, self.hparams.checkpoints, self.member_digests, "the ensemble checkpoint")

    @classmethod
    def options_from_checkpoint(cls, options: dict, checkpoint: dict, path: Path) -> dict:
        """The members where the ensemble checkpoint recorded them (relative to its own folder)."""
        return options | {"checkpoints": recorded_members(checkpoint, path)}

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
        # each file hashed once, for the ensemble's check (a missing file has none: load_task says so)
        self.member_digests = [file_sha256(p) if Path(p).is_file() else "" for p in hp.checkpoints]
        for path in hp.checkpoints:
            self.members.append(load_task(path))
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
        # a weighted sum, not an einsum: ONNX export writes it with operators the runner admits
        return (self.weights.view(-1, 1, 1) * probs).sum(0).clamp_min(1e-12).log()

    def mean_dme(self, member_dme: list[torch.Tensor | None]) -> torch.Tensor | None:
        """The DME logit of the weighted mean P(DME) of the members that have one (None: none has).

        Args:
            member_dme: each member's DME logits [B], None for a member without a DME output.
        """
        known = [(w, d) for w, d in zip(self.weights, member_dme, strict=True) if d is not None]
        if not known:
            return None
        total = sum(w for w, _ in known)
        mean = sum(w * torch.sigmoid(d.float()) for w, d in known) / total
        mean = mean.clamp(1e-7, 1 - 1e-7)
        return mean.log() - (1 - mean).log()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, K]: the log of the members' weighted mean probability."""
        return self.mean_logits([m(images) for m in self.members])

    def forward_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ensemble's logits and DME logits, from one pass of each member."""
        outputs = [m.forward_with_dme(images) for m in self.members]
        return self.mean_logits([z for z, _ in outputs]), self.mean_dme([d for _, d in outputs])

    def embed_with_dme(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Logits, DME logits and the members' embeddings side by side, from one pass of each member."""
        outputs = [m.embed_with_dme(images) for m in self.members]
        embedding = torch.cat([e.float() for _, _, e in outputs], -1)
        return (
            self.mean_logits([z for z, _, _ in outputs]),
            self.mean_dme([d for _, d, _ in outputs]),
            embedding,
        )

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The members' pooled embeddings side by side."""
        return torch.cat([m.embedding(images).float() for m in self.members], -1)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ensemble's logits and the members' embeddings, from one pass of each member."""
        outputs = [m.embed(images) for m in self.members]
        return self.mean_logits([z for z, _ in outputs]), torch.cat([e.float() for _, e in outputs], -1)

    def attention_maps(
        self, images: torch.Tensor, grade: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The members' maps of the ensemble's decided grade, averaged with the ensemble weights.

        Each member maps the evidence for the grade the *ensemble* decided (not its own choice),
        so the averaged map explains the grade shown beside it.
        """
        if grade is None:
            with torch.no_grad():
                grade = self.rule(self(images)).grade
        outputs = [m.attention_maps(images, grade) for m in self.members]
        maps = torch.einsum("m,mbhw->bhw", self.weights, torch.stack([o[0] for o in outputs]))
        method = "weighted mean of the members' maps of the decided grade"
        return maps, self.mean_logits([o[1] for o in outputs]), method

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The members' shared normalisation (members normalised differently are refused at load).

        Before the members are loaded (the CLI asks at instantiation, to set the data's), the first
        member's recorded backbone says it; a member that cannot be read yet gives CLIP's (it is
        refused with its own message when loaded).
        """
        if len(self.members):
            return self.members[0].normalisation()
        first = self.hparams.checkpoints[0]
        try:  # its recorded options only: the weights stay unread until the members load
            recorded = {} if archive_problem(first) else peek_checkpoint(first).get("hyper_parameters", {})
        except (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError):
            recorded = {}
        return normalisation_of(recorded.get("backbone"))

    def split_extras(self, stage: str) -> dict:
        """The members and their weights."""
        return {"members": list(self.hparams.checkpoints), "weights": self.weights.tolist()}
