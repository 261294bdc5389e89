"""The 12-dimensional human-image aesthetics standard of HumanAesExpert.

This module is the single source of truth for the dimensions (with their groups and the one-line definitions the
annotate page shows), the five levels, the score<->level mapping and the prompts/answers of the training format.
Everything else (Django models and checks, API enums, UI labels, export writers, model heads) imports from here;
nothing re-types the list.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Dimension:
    index: int  # 0..11, the training order of the reference code
    key: str  # identifier used in the database, the API and the UI
    name: str  # the human name, as written in the expert answer text
    group: str  # a key of GROUPS ("face", "body" or "overall"): the UI groups the controls by it
    definition: str  # one or two sentences for the annotator: what this dimension rates


@dataclass(frozen=True)
class DimensionGroup:
    key: str
    label: str  # the heading the annotate page shows
    description: str


# The standard's three parts, in the order the dimensions come: the face, the rest of the person and the setting
# (the "general appearance" of HumanAesExpert), and the overall judgements.
GROUPS: tuple[DimensionGroup, ...] = (
    DimensionGroup("face", "Face", "The face alone: light, sharpness, skin, structure and outline."),
    DimensionGroup("body", "Body", "The person below the face and around them: outfit, figure, look, setting."),
    DimensionGroup("overall", "Overall", "The whole appearance and the whole image, taken together."),
)
GROUP_BY_KEY: dict[str, DimensionGroup] = {g.key: g for g in GROUPS}

DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(0, "facial_brightness", "Facial Brightness", "face",
              "How well the face is lit: enough, even light on it, without deep shadows, glare or over-exposure."),
    Dimension(1, "facial_feature_clarity", "Facial Feature Clarity", "face",
              "How sharp and distinct the eyes, brows, nose and mouth are: in focus, visible, not blurred or hidden."),
    Dimension(2, "facial_skin_tone", "Facial Skin Tone", "face",
              "How even, natural and healthy the skin of the face looks: its colour, texture and blemishes."),
    Dimension(3, "facial_structure", "Facial Structure", "face",
              "The harmony of the face: proportions, symmetry and the balance of the features."),
    Dimension(4, "facial_contour_clarity", "Facial Contour Clarity", "face",
              "How clearly the outline of the face (jaw, chin, cheeks, hairline) stands out from hair and background."),
    Dimension(5, "facial_aesthetic", "Facial Aesthetic Score", "face",
              "The aesthetics of the face as a whole: the face dimensions above taken together."),
    Dimension(6, "outfit", "Outfit", "body",
              "Clothes and accessories: how well they fit, go together and suit the person and the scene."),
    Dimension(7, "body_shape", "Body Shape", "body",
              "The figure and the pose: proportions, posture and how the body is presented in the frame."),
    Dimension(8, "looks", "Looks", "body",
              "The person's overall look: hairstyle, grooming, expression, style and presence."),
    Dimension(9, "environment", "Environment", "body",
              "The setting around the person: a clear, tidy background and scene that suits and supports the subject."),
    Dimension(10, "general_appearance_aesthetic", "General Appearance Aesthetic Score", "overall",
              "The aesthetics of the whole appearance: outfit, body shape, looks and environment taken together."),
    Dimension(11, "comprehensive", "Comprehensive Aesthetic Score", "overall",
              "The overall aesthetics of the human image: the person and the photograph as a whole."),
)
NUM_DIMENSIONS = len(DIMENSIONS)
DIMENSION_KEYS: tuple[str, ...] = tuple(d.key for d in DIMENSIONS)
DIMENSION_BY_KEY: dict[str, Dimension] = {d.key: d for d in DIMENSIONS}
OVERALL: Dimension = DIMENSIONS[-1]  # the overall score is always the last element
OVERALL_INDEX = OVERALL.index
SUB_DIMENSIONS: tuple[Dimension, ...] = DIMENSIONS[:-1]


def grouped(dimensions: Sequence[Dimension]) -> list[tuple[DimensionGroup, list[Dimension]]]:
    """The dimensions under their groups, in the standard's group order; groups with none of them are left out."""
    parts = [(g, [d for d in dimensions if d.group == g.key]) for g in GROUPS]
    return [(g, members) for g, members in parts if members]

SCORE_MIN = 0.0
SCORE_MAX = 1.0

# Levels: score < 0.2 bad, < 0.4 poor, < 0.6 fair, < 0.8 good, else excellent.
LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
NUM_LEVELS = len(LEVELS)
LEVEL_UPPER_BOUNDS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
LEVEL_CENTRES: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)

ANSWER_PREFIX = "The aesthetics of the human image is"
OVERALL_ANSWER_TEMPLATE = ANSWER_PREFIX + " {level}"

# Training recipes: how a record becomes a chat sequence (see model_core/text.py for the token layout).
# "platform": our own prompt lists and layout (the heads read where the one-prefill scorer reads).
# "reference": the HumanAesExpert reference trainer's prompts, system turn and one-turn expert records.
PLATFORM_RECIPE = "platform"
REFERENCE_RECIPE = "reference"
RECIPES: tuple[str, ...] = (PLATFORM_RECIPE, REFERENCE_RECIPE)

# Prompt lists: the trainer picks one per record from a seed so that a run is reproducible. The overall prompts
# go with is_expert 0, the "... from 12 different dimensions" prompts with is_expert 1.
OVERALL_PROMPTS: tuple[str, ...] = (
    "Can you evaluate the aesthetics of the human image?",
    "How would you rate the aesthetics of the human image?",
    "What is your aesthetic rating of the human image?",
    "Please rate the aesthetics of the human image.",
    "Rate the aesthetic quality of the person in this image.",
    "How aesthetically pleasing is the human image?",
)
EXPERT_PROMPTS: tuple[str, ...] = (
    "Can you evaluate the aesthetics of the human image from 12 different dimensions?",
    "How would you rate the aesthetics of the human image from 12 different dimensions?",
    "Please rate the aesthetics of the human image from 12 different dimensions.",
    "Evaluate the human image's aesthetics from 12 different dimensions.",
)

# The reference recipe's lists, in the reference's order (its register script draws one uniformly per record, the
# overall list for is_expert 0, the expert list for is_expert 1, and puts "<image>\n" before it).
REFERENCE_OVERALL_PROMPTS: tuple[str, ...] = (
    "Can you evaluate the aesthetics of the human image?",
    "Rate the aesthetics of this human picture.",
    "How is the aesthetics of this human image?",
    "Can you rate the aesthetics of this human picture?",
    "Please evaluate the aesthetics of the human image.",
)
REFERENCE_EXPERT_PROMPTS: tuple[str, ...] = (
    "Can you evaluate the aesthetics of the human image from 12 different dimensions?",
    "Rate the aesthetics of this human picture from 12 different dimensions.",
    "How is the aesthetics of this human image from 12 different dimensions?",
    "Can you rate the aesthetics of this human picture from 12 different dimensions?",
    "Please evaluate the aesthetics of the human image from 12 different dimensions.",
)
# The question the released checkpoints are asked at inference (their README and evaluation script).
REFERENCE_INFERENCE_PROMPT = REFERENCE_OVERALL_PROMPTS[1]
# The system turn the reference trainer writes: its template subclasses ms-swift's `InternvlTemplate` (not
# `Internvl2Template`), whose default system text is this one; the fine-tuning scripts pass no `--system`.
REFERENCE_SYSTEM_PROMPT = "You are an AI assistant whose name is InternLM (书生·浦语)."


def prompt_lists(recipe: str = PLATFORM_RECIPE) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(overall prompts, expert prompts) of a recipe."""
    if recipe == PLATFORM_RECIPE:
        return OVERALL_PROMPTS, EXPERT_PROMPTS
    if recipe == REFERENCE_RECIPE:
        return REFERENCE_OVERALL_PROMPTS, REFERENCE_EXPERT_PROMPTS
    raise ValueError(f"unknown training recipe {recipe!r}; expected one of {', '.join(RECIPES)}")


class ScoreError(ValueError):
    """A score that is not a finite number in [0, 1], or a score list of the wrong length."""


def validate_score(value: object, *, what: str = "score") -> float:
    """Return value as a float in [0, 1] or raise ScoreError naming what was wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScoreError(f"{what} must be a number, got {type(value).__name__}")
    score = float(value)
    if not math.isfinite(score) or not SCORE_MIN <= score <= SCORE_MAX:
        raise ScoreError(f"{what} must be in [0, 1], got {value!r}")
    return score


def validate_expert_scores(values: Sequence[object]) -> list[float]:
    """Validate a list of the 12 scores in the standard's order."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ScoreError(f"expert scores must be a list of {NUM_DIMENSIONS} numbers")
    if len(values) != NUM_DIMENSIONS:
        raise ScoreError(f"expert scores must have {NUM_DIMENSIONS} values, got {len(values)}")
    return [validate_score(v, what=DIMENSIONS[i].name) for i, v in enumerate(values)]


def score_to_level_index(score: float) -> int:
    score = validate_score(score)
    for index, upper in enumerate(LEVEL_UPPER_BOUNDS):
        if score < upper:
            return index
    return NUM_LEVELS - 1


def score_to_level(score: float) -> str:
    return LEVELS[score_to_level_index(score)]


def level_to_score(level: str) -> float:
    """The centre of a level's band: what a level alone stands for."""
    try:
        return LEVEL_CENTRES[LEVELS.index(level)]
    except ValueError:
        raise ScoreError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}") from None


def overall_answer(score: float) -> str:
    """`The aesthetics of the human image is <level>` (no final full stop)."""
    return OVERALL_ANSWER_TEMPLATE.format(level=score_to_level(score))


def expert_answer(scores: Sequence[float]) -> str:
    """Twelve lines `<i>. <Dimension name> : <level>`, joined by newlines, none after the last."""
    checked = validate_expert_scores(scores)
    return "\n".join(f"{d.index + 1}. {d.name} : {score_to_level(s)}" for d, s in zip(DIMENSIONS, checked))


def training_scores(*, overall: float, expert: Sequence[float] | None) -> list[float]:
    """The 12-float `scores` list of a training record: eleven zeros and the overall last for overall-only."""
    if expert is not None:
        return validate_expert_scores(expert)
    return [0.0] * (NUM_DIMENSIONS - 1) + [validate_score(overall, what=OVERALL.name)]


def pick_prompt(*, is_expert: bool, seed: int, record_index: int, recipe: str = PLATFORM_RECIPE) -> str:
    """A prompt for one record from the recipe's lists, drawn uniformly and reproducibly from (seed, record index)."""
    overall, expert = prompt_lists(recipe)
    prompts = expert if is_expert else overall
    return prompts[random.Random(f"{seed}:{record_index}").randrange(len(prompts))]
