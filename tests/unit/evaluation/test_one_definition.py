"""One definition per metric: the point estimate is the bootstrap's weighted-count function with weights 1."""

import numpy as np
import torch

from drgrade.evaluation.bootstrap import resampled_metrics
from drgrade.evaluation.metrics import compute_metrics


def test_every_point_metric_is_the_weighted_count_function_on_one_row_of_ones():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 5, 300)
    targets[targets == 3] = 4  # a grade absent from the split: undefined in both, None in results
    probs = torch.tensor(rng.normal(size=(300, 5)) + 1.2 * np.eye(5)[targets]).softmax(1).float()
    preds = probs.argmax(1)
    point = compute_metrics(probs, torch.tensor(targets), preds)
    weighted = resampled_metrics(np.ones((1, 300)), probs.double().numpy(), targets, preds.numpy())
    assert set(weighted) <= set(point.metrics)
    for name, values in weighted.items():
        value = values[0]
        assert point.metrics[name] == (None if np.isnan(value) else value), name  # equal, not close
    assert point.metrics["recall_severe"] is None and point.metrics["auroc_severe"] is None
    assert point.roc[3] is None and point.roc[0] is not None  # torchmetrics draws the curves
    assert int(point.confusion.sum()) == 300 and point.confusion.dtype == torch.long
