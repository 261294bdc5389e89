"""The zero-shot prompt set: versioned and editable (a FilterRun stores the set it used).

Each group is a small classification among its prompts; the group's probability is the softmax mass of its
positive prompts. Thresholds (see proposals.py) refer to groups by name.
"""

from __future__ import annotations

import copy
from typing import Any

PROMPT_SET_VERSION = "2025.1"

DEFAULT_PROMPT_SET: dict[str, Any] = {
    "version": PROMPT_SET_VERSION,
    "groups": {
        "person_subject": {
            "label": "A person is the main subject",
            "positive": ["a photo of a person", "a portrait photo of a person", "a full-body photo of a person"],
            "negative": [
                "a photo of a landscape", "a photo of an object", "a photo of an animal", "a photo of food",
                "a photo of a building", "a photo of a crowd in the distance",
            ],
        },
        "single_person": {
            "label": "A single person",
            "positive": ["a photo of one person", "a photo of a single person alone"],
            "negative": ["a photo of two people", "a photo of a group of people", "a photo of many people"],
        },
        "photograph": {
            "label": "A photograph (not a drawing, render or screenshot)",
            "positive": ["a photograph", "a real photo taken with a camera"],
            "negative": [
                "a drawing", "a painting", "a cartoon", "an anime illustration", "a 3d render",
                "a screenshot of a website", "a screenshot of a video game", "a poster with text",
            ],
        },
        "quality_problems": {
            "label": "Visible quality problems",
            "positive": [
                "a blurry photo", "an out of focus photo", "a dark underexposed photo", "an overexposed photo",
                "a low quality jpeg with compression artifacts", "a photo with a large watermark", "a noisy photo",
            ],
            "negative": ["a sharp, well exposed, high quality photo", "a professional photo"],
        },
    },
}

MAX_PROMPTS = 256
MAX_PROMPT_LENGTH = 300


class PromptSetError(ValueError):
    """The prompt set is malformed; the message says what is wrong."""


def default_prompt_set() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_PROMPT_SET)


def prompt_set_validate(prompt_set: Any) -> dict[str, Any]:
    """Return a normalised copy of `prompt_set`, or raise PromptSetError."""
    if not isinstance(prompt_set, dict):
        raise PromptSetError("The prompt set must be an object with 'version' and 'groups'.")
    version = prompt_set.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PromptSetError("The prompt set needs a non-empty 'version' string.")
    groups = prompt_set.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise PromptSetError("The prompt set needs at least one group in 'groups'.")
    total = 0
    normalised: dict[str, Any] = {}
    for name, group in groups.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise PromptSetError(f"Group name {name!r} must be an identifier (letters, digits, underscores).")
        if not isinstance(group, dict):
            raise PromptSetError(f"Group {name!r} must be an object with 'positive' and 'negative' prompt lists.")
        lists = {}
        for side in ("positive", "negative"):
            prompts = group.get(side)
            if not isinstance(prompts, list) or not prompts:
                raise PromptSetError(f"Group {name!r} needs a non-empty '{side}' list of prompts.")
            for prompt in prompts:
                if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_LENGTH:
                    raise PromptSetError(
                        f"Group {name!r}: every prompt must be a non-empty string "
                        f"of at most {MAX_PROMPT_LENGTH} characters."
                    )
            lists[side] = [p.strip() for p in prompts]
            total += len(prompts)
        normalised[name] = {"label": str(group.get("label") or name.replace("_", " ")), **lists}
    if total > MAX_PROMPTS:
        raise PromptSetError(f"The prompt set has {total} prompts; at most {MAX_PROMPTS} are allowed.")
    return {"version": version.strip(), "groups": normalised}


def prompt_list(prompt_set: dict[str, Any]) -> tuple[list[str], dict[str, tuple[list[int], list[int]]]]:
    """All prompts in one list, and per group the indices of its positive and negative prompts."""
    prompts: list[str] = []
    index: dict[str, tuple[list[int], list[int]]] = {}
    for name, group in prompt_set["groups"].items():
        positive = list(range(len(prompts), len(prompts) + len(group["positive"])))
        prompts.extend(group["positive"])
        negative = list(range(len(prompts), len(prompts) + len(group["negative"])))
        prompts.extend(group["negative"])
        index[name] = (positive, negative)
    return prompts, index
