"""Text helpers without Django: usable from the pure engines too."""

from __future__ import annotations

from typing import Iterable


def name_list(names: Iterable[object], *, limit: int = 10) -> str:
    """At most ``limit`` names for an error message, then how many more: a request with 200,000 unknown keys gets
    a short answer, not all of them echoed back."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: counted(1, "image") -> "1 image", counted(2, "image") ->
    "2 images", counted(3, "batch", "batches") -> "3 batches"."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"
