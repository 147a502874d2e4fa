"""val_predictions.csv beside a fit's best checkpoint: the rule's cuts recomputed from it alone."""

from __future__ import annotations

import numpy as np
import torch

from drgrade.decision.fitting import fit_operating_points, uncertainty_cutoff
from drgrade.decision.thresholds import calibrate_thresholds
from drgrade.predictions import COLUMNS, read_predictions, read_rows


def recompute_rule(path, objective: str) -> dict[str, np.ndarray]:
    """The rule's cuts, thresholds and entropy cut from a val_predictions.csv, without the model.

    An independent recomputation: only the file's probabilities, grades and patients are used.
    """
    saved = read_predictions(path)
    probs = saved.probabilities.astype(np.float64)
    _, groups = np.unique(np.asarray(saved.patients), return_inverse=True)
    p = np.clip(probs, 1e-12, 1.0)
    return {
        # the rule sums the probabilities in float32, as it does when it decides
        "cuts": np.float32(fit_operating_points(probs.astype(np.float32), saved.targets, 0.9, 0.95)),
        "thresholds": calibrate_thresholds(
            torch.from_numpy(probs), torch.from_numpy(saved.targets), objective, torch.from_numpy(groups)
        ).numpy(),
        "uncertainty_cutoff": np.float32(uncertainty_cutoff(-(p * np.log(p)).sum(1), 0.1)),
    }


def check_reproduced(checkpoint, objective: str) -> None:
    """Every fitted number the checkpoint carries equals the one recomputed from its val_predictions.csv."""
    path = checkpoint.parent / "val_predictions.csv"
    rows = read_rows(path)
    assert list(rows[0])[: len(COLUMNS)] == list(COLUMNS)  # the prediction schema
    assert rows[0]["checkpoint"].startswith(f"{checkpoint.name} sha256:")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    again = recompute_rule(path, objective)
    np.testing.assert_array_equal(again["cuts"], state["rule.operating_cuts"].numpy())
    np.testing.assert_array_equal(again["thresholds"], state["rule.thresholds"].numpy())
    assert again["uncertainty_cutoff"] == state["rule.uncertainty_cutoff"].numpy()


def test_zero_shot_fit_keeps_the_validation_pass_its_rule_was_fitted_on(zero_shot_checkpoint):
    check_reproduced(zero_shot_checkpoint, "none")
    saved = read_predictions(zero_shot_checkpoint.parent / "val_predictions.csv")
    assert len(saved.targets) > 0 and np.isfinite(saved.probabilities).all()
