"""Adaptation models over a frozen backbone's pooled embeddings (``drgrade.embeddings``).

- ``LinearProbe``: multinomial logistic regression on standardised embeddings (scikit-learn;
  scaled by the training split's mean and spread, classes balanced), its inverse
  regularisation ``C`` chosen on the validation split;
- ``TipAdapter`` (Zhang et al., ECCV 2022): training-free; a cache of the training embeddings
  (keys) and their one-hot grades (values) added to the zero-shot text classifier's logits,
  ``logits = s * f W^T + alpha * exp(-beta * (1 - f K^T)) V``; the template set, ``alpha`` and
  ``beta`` are chosen on validation;
- ``TipAdapterF``: the same with the cache keys fine-tuned on the training split (cross-entropy,
  AdamW), then ``alpha`` and ``beta`` chosen on validation again;
- ``ClipAdapter`` (Gao et al., IJCV 2024, arXiv 2110.04544): a two-layer bottleneck MLP ``A`` on the
  unit image embedding, blended with it by the residual ratio ``r``, ``f* = r A(f) + (1 - r) f``,
  classified by the frozen zero-shot text classifier, ``logits = s * unit(f*) W^T``; ``A`` is
  trained on the training split, the template set and ``r`` chosen on validation.

Every model returns logits [N, 5]; ``drgrade.protocols.evaluate`` decides and evaluates them with
the same decision rule and metrics as the image models. Validation choices maximise QWK; ties
go to the first candidate (the strongest regularisation, the smallest cache weight).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from drgrade.evaluation.kappa import qwk
from drgrade.grades import NUM_GRADES

#: The log-probability given to a grade absent from the training split (e.g. a 1-shot draw without it).
ABSENT_LOG_PROBABILITY = math.log(1e-6)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@contextmanager
def single_threaded():
    """One BLAS and one torch thread: on problems this small, parallel threads only contend.

    A context manager, or a method decorator (``@single_threaded()``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def validation_score(logits: np.ndarray, grades: np.ndarray) -> float:
    """QWK of the argmax decisions (an undefined QWK counts as -1, below any defined one)."""
    return qwk(targets=grades, preds=logits.argmax(1), undefined=-1.0)


def best_of(candidates: Iterable, score) -> tuple:
    """The candidate with the highest ``score(candidate)``; the first among ties; (candidate, score)."""
    best, best_score = None, -math.inf
    for candidate in candidates:
        value = score(candidate)
        if value > best_score:
            best, best_score = candidate, value
    return best, best_score


def text_sets(text_classifiers: dict[str, list] | None) -> dict[str, torch.Tensor]:
    """The embeddings' zero-shot text classifiers as tensors {template set: [5, D]} (empty: none)."""
    return {name: torch.tensor(w, dtype=torch.float32) for name, w in (text_classifiers or {}).items()}


class LinearProbe:
    """Logistic regression on frozen embeddings, ``C`` chosen on validation (see the module docstring)."""

    name: ClassVar[str] = "linear_probe"
    display_name: ClassVar[str] = "Linear probe"
    #: Inverse regularisation strengths tried, strongest first.
    C_GRID: ClassVar[tuple[float, ...]] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model = self.scaler = None
        self.choices: dict = {}

    def fit(self, train: np.ndarray, train_grades: np.ndarray, val: np.ndarray, val_grades: np.ndarray, **_):
        """Fit one regression per ``C`` on training embeddings; keep the best on validation.

        Args:
            train: training embeddings [N, D].
            train_grades: their grades.
            val: validation embeddings.
            val_grades: their grades.
        """
        with single_threaded():
            return self.fit_grid(train, train_grades, val, val_grades)

    def fit_grid(self, train: np.ndarray, train_grades: np.ndarray, val: np.ndarray, val_grades: np.ndarray):
        """``fit``'s search over ``C_GRID``."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(train)
        x, grades = self.scaler.transform(train), np.asarray(train_grades)
        # C from strongest to weakest, each fit starting from the last solution (warm start)
        regression = LogisticRegression(class_weight="balanced", max_iter=1000, warm_start=True)
        fitted = {}

        def score(c: float) -> float:
            self.model = regression.set_params(C=c).fit(x, grades)
            fitted[c] = (self.model.coef_.copy(), self.model.intercept_.copy())
            return validation_score(self.logits(val), np.asarray(val_grades))

        chosen, value = best_of(self.C_GRID, score)
        self.model.coef_, self.model.intercept_ = fitted[chosen]
        self.choices = {"C": chosen, "val_qwk": value}
        return self

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Log-probabilities [N, 5] (grades absent from training get ``ABSENT_LOG_PROBABILITY``)."""
        out = np.full((len(embeddings), NUM_GRADES), ABSENT_LOG_PROBABILITY)
        if len(self.model.classes_) == 1:  # one grade trained: it is certain
            out[:, int(self.model.classes_[0])] = 0.0
            return out
        scaled = self.scaler.transform(embeddings)
        out[:, self.model.classes_.astype(int)] = self.model.predict_log_proba(scaled)
        return np.maximum(out, ABSENT_LOG_PROBABILITY)


class TipAdapter:
    """The training-free cache model (see the module docstring)."""

    name: ClassVar[str] = "tip_adapter"
    display_name: ClassVar[str] = "Tip-Adapter"
    ALPHAS: ClassVar[tuple[float, ...]] = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
    BETAS: ClassVar[tuple[float, ...]] = (1.0, 3.0, 5.5, 7.0, 10.0)

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.keys = self.values = self.text = None
        self.alpha, self.beta, self.scale = 1.0, 1.0, 1.0
        self.choices: dict = {}

    @single_threaded()
    def fit(
        self,
        train: np.ndarray,
        train_grades: np.ndarray,
        val: np.ndarray,
        val_grades: np.ndarray,
        text_classifiers: dict[str, list] | None = None,
        logit_scale: float = 100.0,
    ):
        """Build the cache from the training embeddings; choose template set, alpha, beta on validation.

        Args:
            train: training embeddings [N, D].
            train_grades: their grades.
            val: validation embeddings.
            val_grades: their grades.
            text_classifiers: {template set: [5][D] unit text embeddings} (embeddings' metadata).
            logit_scale: the backbone's CLIP logit scale.
        """
        self.keys = torch.from_numpy(unit_rows(train)).float()
        self.values = torch.nn.functional.one_hot(torch.as_tensor(train_grades).long(), NUM_GRADES).float()
        self.scale = float(logit_scale)
        self.tune_keys(train_grades)
        sets = text_sets(text_classifiers)
        sets = sets or {"none": torch.zeros(NUM_GRADES, train.shape[1])}
        val_grades = np.asarray(val_grades)

        def score(candidate) -> float:
            self.text, self.alpha, self.beta = sets[candidate[0]], candidate[1], candidate[2]
            return validation_score(self.logits(val), val_grades)

        grid = [(s, a, b) for s in sets for a in self.ALPHAS for b in self.BETAS]
        (template, alpha, beta), value = best_of(grid, score)
        self.text, self.alpha, self.beta = sets[template], alpha, beta
        self.choices = {"template_set": template, "alpha": alpha, "beta": beta, "val_qwk": value}
        return self

    def tune_keys(self, train_grades: np.ndarray) -> None:
        """Tip-Adapter keeps the cache as built (Tip-Adapter-F trains it)."""

    @torch.no_grad()
    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Zero-shot logits plus the weighted cache logits [N, 5]."""
        return self.torch_logits(torch.from_numpy(unit_rows(embeddings)).float(), self.keys).numpy()

    def torch_logits(self, features: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``s * f W^T + alpha * exp(-beta * (1 - f K^T)) V`` for unit features [N, D]."""
        zero_shot = self.scale * features @ self.text.T if self.text is not None else 0.0
        affinity = features @ keys.T
        return zero_shot + self.alpha * torch.exp(-self.beta * (1 - affinity)) @ self.values


class TipAdapterF(TipAdapter):
    """Tip-Adapter with its cache keys fine-tuned on the training split."""

    name: ClassVar[str] = "tip_adapter_f"
    display_name: ClassVar[str] = "Tip-Adapter-F"
    EPOCHS: ClassVar[int] = 50
    LR: ClassVar[float] = 1e-3

    def tune_keys(self, train_grades: np.ndarray) -> None:
        """Full-batch AdamW on the cache keys, each training image scored by the cache without itself.

        With one view per image (no augmentation), an image's own key would answer for it and
        the loss would teach nothing: the cache term leaves each image's own entry out.
        """
        generator = torch.Generator().manual_seed(self.seed)
        features = self.keys.clone()
        keys = torch.nn.Parameter(self.keys + 1e-4 * torch.randn(self.keys.shape, generator=generator))
        optimiser = torch.optim.AdamW([keys], lr=self.LR, weight_decay=1e-4)
        targets = torch.as_tensor(train_grades).long()
        others = 1 - torch.eye(len(features))
        with torch.enable_grad():
            for _ in range(self.EPOCHS):
                optimiser.zero_grad()
                weights = torch.exp(-self.beta * (1 - features @ keys.T)) * others
                loss = torch.nn.functional.cross_entropy(self.alpha * weights @ self.values, targets)
                loss.backward()
                optimiser.step()
        self.keys = keys.detach()


def balanced_weights(grades: torch.Tensor) -> torch.Tensor:
    """Cross-entropy class weights N / (K * n_k) of the grades present (absent grades weigh 0)."""
    counts = torch.bincount(grades, minlength=NUM_GRADES).float()
    return torch.where(counts > 0, len(grades) / (NUM_GRADES * counts.clamp_min(1)), torch.zeros(()))


class ClipAdapter:
    """CLIP-Adapter: a residual bottleneck MLP on the frozen embedding (see the module docstring).

    Without text classifiers (a backbone with no text tower) the classifier is the unit mean of
    each grade's training embeddings, the nearest-prototype classifier the adapter then refines.
    """

    name: ClassVar[str] = "clip_adapter"
    display_name: ClassVar[str] = "CLIP-Adapter"
    #: Residual ratios tried (the share of the adapted feature), smallest first.
    RATIOS: ClassVar[tuple[float, ...]] = (0.2, 0.4, 0.6, 0.8)
    #: The bottleneck: hidden width = embedding width / REDUCTION (the paper's 4).
    REDUCTION: ClassVar[int] = 4
    EPOCHS: ClassVar[int] = 100
    LR: ClassVar[float] = 5e-3

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.adapter: torch.nn.Module | None = None
        self.text: torch.Tensor | None = None
        self.ratio, self.scale = 0.0, 1.0
        self.choices: dict = {}

    @single_threaded()
    def fit(
        self,
        train: np.ndarray,
        train_grades: np.ndarray,
        val: np.ndarray,
        val_grades: np.ndarray,
        text_classifiers: dict[str, list] | None = None,
        logit_scale: float = 100.0,
    ):
        """Train an adapter per (template set, ratio); keep the best on validation.

        The arguments are ``TipAdapter.fit``'s.
        """
        features = torch.from_numpy(unit_rows(train)).float()
        grades = torch.as_tensor(train_grades).long()
        self.scale = float(logit_scale)
        sets = text_sets(text_classifiers)
        sets = sets or {"prototypes": self.prototypes(features, grades)}
        trained = {}

        def score(candidate) -> float:
            self.text, self.ratio = sets[candidate[0]], candidate[1]
            self.adapter = trained[candidate] = self.trained_adapter(features, grades)
            return validation_score(self.logits(val), np.asarray(val_grades))

        (template, ratio), value = best_of([(s, r) for s in sets for r in self.RATIOS], score)
        self.text, self.ratio, self.adapter = sets[template], ratio, trained[template, ratio]
        self.choices = {"template_set": template, "ratio": ratio, "val_qwk": value}
        return self

    @staticmethod
    def prototypes(features: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
        """The unit mean training embedding of each grade [5, D] (zero for a grade absent from training)."""
        sums = torch.zeros(NUM_GRADES, features.shape[1]).index_add_(0, grades, features)
        return torch.nn.functional.normalize(sums, dim=1)

    def trained_adapter(self, features: torch.Tensor, grades: torch.Tensor) -> torch.nn.Module:
        """A fresh bottleneck MLP trained full batch at ``self.ratio`` (balanced cross-entropy, AdamW)."""
        width = features.shape[1]
        hidden = max(1, width // self.REDUCTION)
        with torch.random.fork_rng():  # seeded initialisation without moving the global generator
            torch.manual_seed(self.seed)
            self.adapter = torch.nn.Sequential(
                torch.nn.Linear(width, hidden, bias=False),
                torch.nn.ReLU(),
                torch.nn.Linear(hidden, width, bias=False),
                torch.nn.ReLU(),
            )
        optimiser = torch.optim.AdamW(self.adapter.parameters(), lr=self.LR, weight_decay=1e-4)
        weights = balanced_weights(grades)
        with torch.enable_grad():
            for _ in range(self.EPOCHS):
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(self.torch_logits(features), grades, weight=weights)
                loss.backward()
                optimiser.step()
        return self.adapter.eval()

    def torch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``s * unit(r A(f) + (1 - r) f) W^T`` for unit features [N, D]."""
        adapted = self.ratio * self.adapter(features) + (1 - self.ratio) * features
        return self.scale * torch.nn.functional.normalize(adapted, dim=1) @ self.text.T

    @torch.no_grad()
    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """The adapted features' text-classifier logits [N, 5]."""
        return self.torch_logits(torch.from_numpy(unit_rows(embeddings)).float()).numpy()


#: The adaptation models by protocol name.
ADAPTERS = {cls.name: cls for cls in (LinearProbe, TipAdapter, TipAdapterF, ClipAdapter)}
