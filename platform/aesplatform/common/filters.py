"""Filters shared by the apps' APIs."""

from django import forms
from django_filters import NumberFilter

from aesplatform.common.converters import MAX_ID


class BigIntegerFormField(forms.IntegerField):
    """An integer a 64-bit column can hold: a larger one is a 400 here, not an OverflowError in SQLite's driver."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", -MAX_ID - 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class IntegerFilter(NumberFilter):
    """An id or other integer: `?x=1.5` is a 400. (django-filter's NumberFilter reads a decimal, and an integer
    column then compares with it truncated: `?near_duplicate_group=0.5` listed group 0.) So is one beyond 64 bits."""

    field_class = BigIntegerFormField
