"""The five international DR severity grades: the single source of names, descriptions and prompts.

Everything that needs a grade's name (tables, plots, predictions), its clinical description
(zero-shot prompts, prompt-learner class tokens) or its referable flag reads it from here, so a
wording change happens in one place. Diabetic macular edema's two states (absent, present) are
described here too (``DME_STATES``): zero-shot CLIP and the ranking model's DME prompts read them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grade:
    """One severity grade of the International Clinical DR scale."""

    index: int
    name: str
    short: str
    description: str
    lesions: str
    referable: bool


GRADES: tuple[Grade, ...] = (
    Grade(0, "No DR", "no", "no diabetic retinopathy", "a healthy retina with no lesions", referable=False),
    Grade(1, "Mild", "mild", "mild diabetic retinopathy", "a few microaneurysms", referable=False),
    Grade(
        2,
        "Moderate",
        "moderate",
        "moderate diabetic retinopathy",
        "haemorrhages and hard exudates",
        referable=True,
    ),
    Grade(
        3,
        "Severe",
        "severe",
        "severe diabetic retinopathy",
        "many haemorrhages, cotton wool spots and venous beading",
        referable=True,
    ),
    Grade(
        4,
        "Proliferative",
        "proliferative",
        "proliferative diabetic retinopathy",
        "neovascularisation and preretinal haemorrhage",
        referable=True,
    ),
)

NUM_GRADES = len(GRADES)
GRADE_NAMES: tuple[str, ...] = tuple(g.name for g in GRADES)
#: Referable DR is grade >= 2 (moderate or worse), the usual screening referral threshold.
REFERABLE_FROM = min(g.index for g in GRADES if g.referable)
#: Vision-threatening DR is grade >= 3 (severe or proliferative), the urgent-referral level.
VISION_THREATENING_FROM = 3
#: The referral levels and the grade each starts at.
REFERRAL_LEVELS = {"referable": REFERABLE_FROM, "vtdr": VISION_THREATENING_FROM}


def referral_score(probabilities, start: int):
    """P(grade >= start) per row of a [N, K] probability array (NumPy or torch)."""
    return probabilities[:, start:].sum(1)


#: Zero-shot prompt template sets. ``{}`` receives a grade's clinical description (or, for the
#: "lesions" set, its lesion description). Several sets are scored on the validation split and
#: the best is kept, because CLIP's zero-shot accuracy is known to swing with wording.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "clinical": (
        "a fundus photograph showing {}.",
        "a retinal image with {}.",
        "a colour fundus photograph of an eye with {}.",
    ),
    "plain": ("{}.",),
    "photo": (
        "a photo of {}.",
        "a retina with {}.",
    ),
    "lesions": (
        "a fundus photograph showing {}.",
        "a retinal image with {}.",
    ),
}


def grade_text(grade: Grade | DmeState, template_set: str) -> str:
    """The text slot a template set fills for ``grade`` (lesions for ``lesions``, else clinical)."""
    return grade.lesions if template_set == "lesions" else grade.description


#: FLAIR's expert-knowledge descriptions of each grade (Silva-Rodriguez et al., Medical Image
#: Analysis 2025: ``definitions`` in github.com/jusiro/FLAIR, ``flair/modeling/dictionary.py``),
#: by grade index. FLAIR adds the grade's own name when it is not among them.
FLAIR_DEFINITIONS: dict[int, tuple[str, ...]] = {
    0: ("no diabetic retinopathy", "no microaneurysms"),
    1: ("only few microaneurysms",),
    2: (
        "many exudates near the macula",
        "many haemorrhages near the macula",
        "retinal thickening near the macula",
        "hard exudates",
        "cotton wool spots",
        "few severe haemorrhages",
    ),
    3: ("venous beading", "many severe haemorrhages", "intraretinal microvascular abnormality"),
    4: ("preretinal or vitreous haemorrhage", "neovascularization"),
}


@dataclass(frozen=True)
class DmeState:
    """Diabetic macular edema absent or present, described as a grade is for prompts."""

    description: str
    lesions: str
    #: Descriptions for the ``flair`` prompt set: present, FLAIR's own grade-2 definitions near the
    #: macula (``FLAIR_DEFINITIONS[2]``); absent, their negation in the same words.
    flair: tuple[str, ...]


#: (absent, present): P(DME) is a softmax over this pair's prompts (zero-shot), or over the
#: ranking model's learnt prompts around the same descriptions. DME as Gulshan et al. 2016 grade
#: it: hard exudates within one disc diameter of the macula.
DME_STATES: tuple[DmeState, DmeState] = (
    DmeState("no macular edema", "a macula free of exudates", ("no exudates near the macula",)),
    DmeState(
        "diabetic macular edema",
        "hard exudates near the macula",
        ("many exudates near the macula", "retinal thickening near the macula"),
    ),
)
#: FLAIR's caption (its "[CLS]" slot as ``{}``).
FLAIR_CAPTION = "A fundus photograph of {}"
#: Every zero-shot prompt set: the template sets, and FLAIR's expert descriptions (``flair``).
PROMPT_SETS = (*TEMPLATE_SETS, "flair")


def grade_prompts(grade: Grade, prompt_set: str) -> list[str]:
    """The zero-shot prompts of ``grade`` in ``prompt_set`` (their embeddings are averaged).

    Args:
        grade: the grade.
        prompt_set: a ``TEMPLATE_SETS`` name (each template filled with ``grade_text``), or
            ``flair`` (FLAIR's caption around each of its expert descriptions, plus the grade's
            name, as FLAIR's own zero-shot classifier builds them).
    """
    return _prompts(grade, FLAIR_DEFINITIONS[grade.index], prompt_set)


def dme_prompts(state: DmeState, prompt_set: str) -> list[str]:
    """The zero-shot prompts of a DME state in ``prompt_set``, built as ``grade_prompts`` builds a grade's."""
    return _prompts(state, state.flair, prompt_set)


def _prompts(described: Grade | DmeState, flair: tuple[str, ...], prompt_set: str) -> list[str]:
    if prompt_set == "flair":
        descriptions = list(flair)
        if described.description not in descriptions:
            descriptions.append(described.description)
        return [FLAIR_CAPTION.format(d) for d in descriptions]
    return [template.format(grade_text(described, prompt_set)) for template in TEMPLATE_SETS[prompt_set]]


def check_grade(value: object) -> int:
    """Return ``value`` as a grade index, or raise ``ValueError`` saying why it is not one."""
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"grade {value!r} is not a number in 0-{NUM_GRADES - 1}") from None
    if not as_float.is_integer() or not 0 <= as_float < NUM_GRADES:
        raise ValueError(f"grade {value!r} is outside 0-{NUM_GRADES - 1}")
    return int(as_float)
