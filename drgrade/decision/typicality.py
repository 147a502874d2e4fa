"""The model's own check that a photograph looks like those it was trained on.

The rule-based quality gate knows what a fundus photograph looks like in general; a look-alike
(a red lamp behind a grid, a cat through a warm circular aperture) can pass it. The grading model
knows what *its* training photographs look like: this module measures how far an input's pooled
embedding lies from them, as a Mahalanobis distance (mean and a Ledoit-Wolf shrinkage covariance
of the training split's embeddings, so a few hundred photographs in hundreds of dimensions still
give a well-conditioned precision matrix). The cut is the 99.5th percentile of the validation
split's distances: about 1 in 200 photographs like the validation ones is sent to a human, and
an input beyond the cut gets ``ungradable: unlike any training photograph (distance X, cut Y)``
and no grade, in ``predict``, the ONNX runner and the web page.

The fitted mean, precision and cut are buffers of the task, so they travel in its checkpoint and
in its exported ONNX graph (which then has a ``distance`` output, the cut in its metadata).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from drgrade.decision.outputs import ATYPICAL

#: The share of validation photographs inside the cut.
QUANTILE = 0.995
#: Fewest photographs a fit needs (training and validation each).
MIN_IMAGES = 2


def ledoit_wolf(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Ledoit-Wolf shrinkage covariance of ``samples`` [N, D] (float64).

    The sample covariance shrunk towards a multiple of the identity by the weight that minimises
    the expected squared error (Ledoit & Wolf 2004, "A well-conditioned estimator for
    large-dimensional covariance matrices").
    """
    samples = np.asarray(samples, np.float64)
    count, dims = samples.shape
    mean = samples.mean(0)
    centred = samples - mean
    sample = centred.T @ centred / count
    scale = np.trace(sample) / dims
    target_gap = ((sample - scale * np.eye(dims)) ** 2).sum() / dims
    squares = centred**2
    # mean over samples of ||x x^T - S||_F^2, from sums of squares (no N x D x D array)
    spread = ((squares.T @ squares).sum() / count - (sample**2).sum()) / (count * dims)
    shrinkage = 0.0 if target_gap == 0 else min(spread, target_gap) / target_gap
    return mean, (1 - shrinkage) * sample + shrinkage * scale * np.eye(dims)


class Typicality(nn.Module):
    """Mahalanobis distance of embeddings from the training photographs', and the refusal cut.

    Unfitted (a model before its first fitting validation pass, or a checkpoint written before
    this check existed) it flags nothing: its buffers are empty and the cut infinite.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("precision", torch.zeros(0, 0))
        self.register_buffer("cut", torch.tensor(math.inf))
        self.register_load_state_dict_pre_hook(_sized_like_the_state)

    @property
    def fitted(self) -> bool:
        """Whether a cut has been fitted (else nothing is flagged)."""
        return self.mean.numel() > 0 and bool(torch.isfinite(self.cut))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Distances [B] of embeddings [B, D] (zeros while unfitted)."""
        if not self.fitted:
            return embeddings.new_zeros(len(embeddings), dtype=torch.float32)
        centred = embeddings.float() - self.mean
        return ((centred @ self.precision) * centred).sum(-1).clamp_min(0).sqrt()

    def fit(self, training: torch.Tensor, validation: torch.Tensor) -> None:
        """Fit mean and precision on training embeddings, the cut on validation distances.

        Args:
            training: [N, D] embeddings of training photographs.
            validation: [M, D] embeddings of validation photographs.
        """
        if len(training) < MIN_IMAGES or len(validation) < MIN_IMAGES:
            return  # too few to say what is typical: leave unfitted
        device = self.cut.device
        mean, covariance = ledoit_wolf(training.double().cpu().numpy())
        self.mean = torch.from_numpy(mean).float().to(device)
        self.precision = torch.from_numpy(np.linalg.pinv(covariance, hermitian=True)).float().to(device)
        self.cut = torch.tensor(float(np.quantile(self.distances_of(validation), QUANTILE)), device=device)

    def distances_of(self, embeddings: torch.Tensor) -> np.ndarray:
        """Distances of embeddings as NumPy, with the current mean and precision (cut aside)."""
        centred = embeddings.float().to(self.mean.device) - self.mean
        return ((centred @ self.precision) * centred).sum(-1).clamp_min(0).sqrt().cpu().numpy()

    def reasons(self, distances: torch.Tensor) -> list[str]:
        """Per image, the refusal for a distance beyond the cut ("" within it)."""
        cut = float(self.cut)
        return [ATYPICAL.format(distance=d, cut=cut) if d > cut else "" for d in distances.tolist()]

    def describe(self) -> dict:
        """What the ONNX metadata and reports say about the check."""
        return {"fitted": self.fitted, "cut": float(self.cut) if self.fitted else None, "quantile": QUANTILE}


def _sized_like_the_state(module: Typicality, state: dict, prefix: str, *args) -> None:
    """Before loading: take the stored buffers' sizes; a checkpoint without them loads unfitted."""
    for name in ("mean", "precision", "cut"):
        key = prefix + name
        if key in state:
            setattr(module, name, torch.empty_like(state[key], device=getattr(module, name).device))
        else:
            state[key] = getattr(module, name).detach().clone()
