"""Lightning's model summary at the start of ``fit`` measures FLOPs rather than printing "Total FLOPs: 0"."""

import pytest
from lightning.pytorch.utilities.model_summary import ModelSummary

from drgrade.tasks import FCNCLIP, RankingCLIP


@pytest.mark.parametrize("make", [FCNCLIP, RankingCLIP])
def test_the_summary_counts_the_flops_of_one_image_at_the_input_size(make):
    task = make("RN-tiny", None, 64)
    summary = ModelSummary(task, max_depth=1)
    assert summary.total_flops > 1_000_000
    assert task.training  # measured in eval mode, the model handed back as it was
