"""Words for values the platform stores as identifiers: export options and sort orders.

{% load wording %}
{{ export.options|export_options }}   -> "Images: hard links · Archive: yes · Image paths: relative to the export"
{{ "-metavoter_score"|ordering_label }} -> "MetaVoter score, high to low"
"""

from __future__ import annotations

from django import template

register = template.Library()

OPTION_LABELS = {
    "images": "Images",
    "archive": "Archive",
    "image_paths": "Image paths",
    "prompts": "Prompts",
    "prompt_seed": "Prompt seed",
    "target_dir": "Folder",
}
OPTION_VALUE_LABELS = {
    "images": {"hardlink": "hard links", "symlink": "symbolic links", "copy": "copies"},
    "image_paths": {"relative": "relative to the export", "absolute": "absolute server paths"},
}
OPTION_ORDER = ("images", "archive", "image_paths", "prompts", "prompt_seed", "target_dir")

COLUMN_LABELS = {
    "metavoter_score": "MetaVoter score",
    "uncertainty": "Uncertainty",
    "id": "Scoring order",
    "lm_score": "LM score",
    "regression_score": "Regression score",
    "created_at": "Date",
}
# per column: (ascending words, descending words)
DIRECTION_WORDS = {
    "id": ("oldest first", "newest first"),
    "created_at": ("oldest first", "newest first"),
}
DEFAULT_DIRECTION_WORDS = ("low to high", "high to low")


def option_label(key: str, value) -> str:
    """One export option in words: `archive=True` -> "Archive: yes"."""
    name = OPTION_LABELS.get(key, key.replace("_", " ").capitalize())
    if isinstance(value, bool):
        shown = "yes" if value else "no"
    elif value is None or value == "":
        shown = "not available"
    else:
        shown = OPTION_VALUE_LABELS.get(key, {}).get(value, str(value))
    return f"{name}: {shown}"


@register.filter
def export_options(options) -> str:
    """An export's options in words, joined by " · " (an automatic folder, i.e. an empty target_dir, is left out;
    prompt seed only when prompts are on)."""
    if not options:
        return ""
    options = dict(options)
    if not options.get("target_dir"):
        options.pop("target_dir", None)
    if not options.get("prompts", False):
        options.pop("prompt_seed", None)
    keys = [k for k in OPTION_ORDER if k in options] + sorted(k for k in options if k not in OPTION_ORDER)
    return " · ".join(option_label(k, options[k]) for k in keys)


@register.filter
def ordering_label(ordering: str) -> str:
    """A sort order in words: "-metavoter_score" -> "MetaVoter score, high to low"."""
    ordering = str(ordering or "")
    descending = ordering.startswith("-")
    column = ordering.lstrip("-")
    name = COLUMN_LABELS.get(column, column.replace("_", " ").capitalize())
    ascending_words, descending_words = DIRECTION_WORDS.get(column, DEFAULT_DIRECTION_WORDS)
    return f"{name}, {descending_words if descending else ascending_words}"
