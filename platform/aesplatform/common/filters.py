"""Filters shared by the apps' APIs."""

from django import forms
from django_filters import NumberFilter


class IntegerFilter(NumberFilter):
    """An id or other integer: `?x=1.5` is a 400. (django-filter's NumberFilter reads a decimal, and an integer
    column then compares with it truncated: `?near_duplicate_group=0.5` listed group 0.)"""

    field_class = forms.IntegerField
