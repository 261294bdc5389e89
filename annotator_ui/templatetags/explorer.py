"""Filters of the image explorer pages."""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def score(value, digits: int = 3):
    """A number with `digits` decimals, or "not available" (marked up) for None: never a made-up value."""
    if value is None:
        return mark_safe('<span class="na" data-na>not available</span>')  # a constant, no user data
    return f"{float(value):.{int(digits)}f}"
