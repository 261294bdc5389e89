"""Input serializers that refuse what they do not know."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.settings import api_settings

from .text import name_list

# Sent along by HTML forms (Django's CSRF token in a session-authenticated form post); never a data field.
_FORM_PLUMBING = frozenset({"csrfmiddlewaretoken"})


class StrictInputSerializer(serializers.Serializer):
    """A request body with a field this serializer does not take is a 400 naming it, not a success that drops it
    (a `PATCH {"redundancy": 5}` answered 200 would tell the client the campaign changed when nothing did)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            accepted = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(set(data) - set(accepted) - _FORM_PLUMBING)
            if unknown:
                raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [
                    f"unknown fields: {name_list(unknown)} (accepted: {', '.join(accepted)})"
                ]}, code="unknown_fields")
        return super().to_internal_value(data)
