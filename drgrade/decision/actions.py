"""What happens to each photograph: refer, no refer, or to a human grader. Torch-free.

A screening programme routes every photograph somewhere; none may fall through. The rule is:

- **to grader**: the photograph has no grade (unreadable, ungradable by the quality gate, out of
  distribution, skipped, or the model's output was unusable), or the model is too uncertain
  (entropy over the validation cut) and does not refer it;
- **refer**: the referral rule (``referable_by_score``: P(referable) at or over the cut fitted on
  validation for the programme's sensitivity) refers it, uncertain or not: a specialist sees it
  either way, so uncertainty never holds back a referral;
- **no refer**: everything else.

``reason`` says why in a screener's words ("photograph too dark"), with what to do next; the
prediction files keep the full technical reason in ``error``.
"""

from __future__ import annotations

REFER = "refer"
NO_REFER = "no refer"
TO_GRADER = "to grader"
#: Every action, in order of urgency.
ACTIONS = (REFER, TO_GRADER, NO_REFER)

RETAKE = "Retake if the patient is still here."
#: (words found in the technical reason, what a screener is told, what to do next), first match wins.
_REASONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("out of distribution", "unlike any training photograph"),
        "photograph unlike those the model was trained on",
        RETAKE,
    ),
    (("quality model rejects",), "photograph of too low quality to grade (quality model)", RETAKE),
    (
        ("two photographs in one image",),
        "two photographs in one image",
        "Send each photograph as its own file.",
    ),
    (("under-exposed",), "photograph too dark", RETAKE),
    (("over-exposed",), "photograph too bright", RETAKE),
    (("out of focus",), "photograph out of focus", RETAKE),
    (("unusual colour",), "photograph's colour unlike a fundus camera's", RETAKE),
    (
        ("no retina recognised",),
        "no retina recognised in the photograph",
        "Check the file; " + RETAKE.lower(),
    ),
    (
        ("no fundus", "not a fundus photograph"),
        "not a fundus photograph",
        "Check the file; " + RETAKE.lower(),
    ),
    (("too small",), "photograph too small to grade", "Send the full-resolution file."),
    (("too large",), "file too large to grade", "Send the camera's own file."),
    (("incomplete file", "cut off"), "file incomplete (damaged in transfer)", "Send the file again."),
    (("not graded:",), "the model's output was unusable", "A grader must grade it."),
    (("skipped:",), "not a photograph drgrade can read", "Check the file."),
)


def photo_action(graded: bool, refers: bool, uncertain: bool) -> str:
    """The action for one photograph (see the module docstring).

    Args:
        graded: the photograph has a checked decision.
        refers: the referral rule refers it.
        uncertain: its uncertainty is over the validation cut.
    """
    if not graded:
        return TO_GRADER
    if refers:
        return REFER
    return TO_GRADER if uncertain else NO_REFER


def screener_reason(error: str) -> tuple[str, str]:
    """(why, what to do next) in a screener's words for a photograph that was not graded.

    Args:
        error: the technical reason the prediction file records.
    """
    lowered = error.lower()
    for words, why, then in _REASONS:
        if any(word in lowered for word in words):
            return why, then
    return "file could not be read", "Check the file; " + RETAKE.lower()
