"""The DME output's own figures: AUROC, operating point and calibration, on the images graded for DME.

Diabetic macular edema is graded by some sources only (Messidor-2 ``adjudicated_dme``, IDRiD's
risk of macular edema); images from the others (label ``UNKNOWN``) are left out of every DME
figure, as they are left out of the DME loss. The cut is fitted on validation for the same target
sensitivity as the referral cuts (``cut_for_sensitivity``) and applied unchanged to test.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, binary_calibration_error

from drgrade.decision.fitting import cut_for_sensitivity
from drgrade.evaluation.clinical import ECE_BINS, sensitivity_specificity


def fit_dme_cut(p_dme: np.ndarray, truth: np.ndarray, target_sensitivity: float) -> float:
    """The highest cut on P(DME) reaching ``target_sensitivity`` on labelled images (NaN: no positive)."""
    known = truth >= 0
    cut = cut_for_sensitivity(p_dme[known], truth[known] == 1, target_sensitivity)
    return math.nan if cut is None else cut


def dme_section(p_dme: np.ndarray, truth: np.ndarray, cut: float | None, target_sensitivity: float) -> dict:
    """metrics.json's ``dme`` section.

    Args:
        p_dme: P(DME) per image [N].
        truth: 1 / 0, negative where the source grades no DME [N].
        cut: the validation cut (None: undefined).
        target_sensitivity: what the cut was fitted for.
    """
    known = truth >= 0
    scores, positive = p_dme[known], truth[known] == 1
    both = 0 < positive.sum() < len(positive)
    scores_t, target_t = torch.as_tensor(scores), torch.as_tensor(positive.astype(np.int64))
    section = {
        "labelled_images": int(known.sum()),
        "positives": int(positive.sum()),
        "auroc": float(binary_auroc(scores_t, target_t)) if both else None,
        "calibration_error": float(binary_calibration_error(scores_t, target_t, n_bins=ECE_BINS))
        if len(scores)
        else None,
        "operating_point": None,
    }
    if cut is not None and len(scores):
        section["operating_point"] = {
            "name": f"dme@sensitivity{target_sensitivity:.2f}",
            "threshold": cut,
            **sensitivity_specificity(scores >= cut, positive),
        }
    return section
