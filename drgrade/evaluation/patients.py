"""Patient-level evaluation: the exam decision (``drgrade.exams``) against each patient's worst eye.

What screening trials report (IDx-DR: Abramoff et al., npj Digital Medicine 2018; EyeArt v2.1:
Ipp et al., JAMA Network Open 2021): per *patient*, at the operating point fixed beforehand (here:
the referral cut chosen on validation),

- **imageability**: the share of patients who got a decision (``refer`` or ``no refer``; the
  rest are ``insufficient``), with its Wilson 95% interval;
- **sensitivity and specificity** among the decided patients of ``refer`` for referable DR
  (worst eye moderate NPDR or worse, or DME) and of the vtDR flag (any photograph severe or
  worse by score, or DME) for vision-threatening DR (worst eye severe or worse, or DME), each
  with its Wilson 95% interval. DME counts in the truth where the source grades it (Messidor-2,
  IDRiD); elsewhere the truth is the grade alone.

The published trial figures are kept beside ours, labelled: they were measured on other patients,
cameras and reference standards, so they frame our numbers and are not a comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drgrade.decision.actions import REFER, photo_action
from drgrade.evaluation.clinical import sensitivity_specificity
from drgrade.evaluation.proportions import wilson_interval
from drgrade.exams import INSUFFICIENT, Exam, decide_exams
from drgrade.grades import REFERRAL_LEVELS

#: Published pivotal-trial results (patient level), as their papers report them; not on drgrade's data.
PUBLISHED: tuple[dict, ...] = (
    {
        "system": "IDx-DR (Abramoff et al. 2018, pivotal trial)",
        "level": "referable",
        "sensitivity": 0.872,
        "sensitivity_ci": [0.818, 0.912],
        "specificity": 0.907,
        "specificity_ci": [0.883, 0.927],
        "imageability": 0.961,
        "imageability_ci": [0.946, 0.973],
    },
    {
        "system": "EyeArt v2.1 (Ipp et al. 2021, pivotal trial)",
        "level": "referable",
        "sensitivity": 0.96,
        "specificity": 0.88,
    },
    {
        "system": "EyeArt v2.1 (Ipp et al. 2021, pivotal trial)",
        "level": "vtdr",
        "sensitivity": 0.97,
        "specificity": 0.90,
    },
)
PUBLISHED_NOTE = "published trial results on other patients and data; not measured by drgrade"


def patient_level(exams: Sequence[Exam], cut: float | None) -> dict:
    """metrics.json's ``patient_level`` section from a split's exams (those with a known truth).

    Args:
        exams: the split's exams (``decide_exams`` of its prediction rows).
        cut: the validation-chosen referral cut the decisions were made at (None: undefined).
    """
    known = [exam for exam in exams if exam.true_worst_grade is not None]
    decided = [exam for exam in known if exam.decision != INSUFFICIENT]
    called = {
        "referable": np.array([exam.decision == REFER for exam in decided], dtype=bool),
        "vtdr": np.array([exam.vtdr for exam in decided], dtype=bool),
    }
    return {
        "unit": "patient (all photographs of both eyes; worst eye is the truth)",
        "cut": cut,
        "num_patients": len(known),
        "decided": len(decided),
        "imageability": len(decided) / len(known) if known else None,
        "imageability_ci": wilson_interval(len(decided), len(known)),
        **{
            level: sensitivity_specificity(
                called[level], np.array([bool(exam.truth(level)) for exam in decided], dtype=bool)
            )
            for level in REFERRAL_LEVELS
        },
        "published": {"note": PUBLISHED_NOTE, "results": list(PUBLISHED)},
    }


def patient_referral_curve(rows: Sequence[dict[str, str]], fractions: Sequence[float]) -> dict:
    """Imageability and patient sensitivity / specificity as more uncertain photographs go to a grader.

    For each fraction x, the x least certain graded photographs (by entropy) that the rule does
    not refer go to a grader instead (a referral is never held back, as in ``photo_action``);
    exams are decided again. The trade-off a programme sets: fewer patients decided, better
    decisions on those that are.

    Args:
        rows: a split's prediction rows (``COLUMNS`` keys).
        fractions: shares of the graded photographs sent to a grader.
    """
    graded = {i for i, row in enumerate(rows) if row["grade"] != ""}
    order = sorted(sorted(graded), key=lambda i: -float(rows[i]["uncertainty"]))  # least certain first
    curve: dict = {"fractions": list(fractions), "imageability": []}
    curve |= {f"{level}_{kind}": [] for level in REFERRAL_LEVELS for kind in ("sensitivity", "specificity")}
    for fraction in fractions:
        deferred = set(order[: round(fraction * len(graded))])
        routed = [
            row | {"action": photo_action(True, row["referable_dr"] == "1", i in deferred)}
            if i in graded
            else row
            for i, row in enumerate(rows)
        ]
        figures = patient_level(decide_exams(routed), None)
        curve["imageability"].append(figures["imageability"])
        for level in REFERRAL_LEVELS:
            for kind in ("sensitivity", "specificity"):
                curve[f"{level}_{kind}"].append(figures[level][kind])
    return curve
