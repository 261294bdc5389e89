"""The hot views' accept() shortcuts (next task, submit) give exactly what their serializers' is_valid() gives, or
decline (None) and leave the input to the serializer: for valid bodies, edge cases and invalid ones."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.exceptions import ValidationError

from aesplatform.annotation.serializers import NextTaskRequestSerializer, SubmitSerializer, validated

KEY = str(uuid.uuid4())

NEXT_TASK_BODIES = [
    {}, {"held": []}, {"held": [1, 2]}, {"held": list(range(1, 11))}, {"held": list(range(1, 12))}, {"held": [0]},
    {"held": [-3]}, {"held": ["4"]}, {"held": [True]}, {"held": [1.0]}, {"held": None}, {"held": "1"},
    {"held": {"a": 1}}, {"held": [2**70]}, {"other": 1}, [], "x", None,
]

SUBMIT_BODIES = [
    {"scores": {"comprehensive": 0.5}, "idempotency_key": KEY},
    {"scores": {"comprehensive": 0.5}, "idempotency_key": KEY, "time_spent_ms": 1000, "ui_version": "annotate.js/2"},
    {"scores": {"comprehensive": 1}, "idempotency_key": KEY.upper(), "time_spent_ms": 0, "ui_version": ""},
    {"scores": {"comprehensive": None, "x": 2.5}, "idempotency_key": KEY.replace("-", ""), "extra": 1},
    {"scores": {}, "idempotency_key": "{%s}" % KEY, "time_spent_ms": 86_400_000},
    {"scores": {"a": "0.5"}, "idempotency_key": KEY}, {"scores": {"a": True}, "idempotency_key": KEY},
    {"scores": {"a": [1]}, "idempotency_key": KEY}, {"scores": {"a": {"b": 1}}, "idempotency_key": KEY},
    {"scores": [0.5], "idempotency_key": KEY}, {"scores": None, "idempotency_key": KEY}, {"idempotency_key": KEY},
    {"scores": {"a": 0.5}}, {"scores": {"a": 0.5}, "idempotency_key": "nope"},
    {"scores": {"a": 0.5}, "idempotency_key": None}, {"scores": {"a": 0.5}, "idempotency_key": 12345},
    {"scores": {"a": 0.5}, "idempotency_key": ""},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "time_spent_ms": -1},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "time_spent_ms": 86_400_001},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "time_spent_ms": "15"},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "time_spent_ms": 15.0},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "time_spent_ms": True},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "time_spent_ms": None},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": "x" * 40},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": "x" * 41},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": " v1 "},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": "   "},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": "a\x00b"},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": "a\tb"},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": "vé"},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": 3},
    {"scores": {"a": 0.5}, "idempotency_key": KEY, "ui_version": None},
    [], "x", None,
]


def _serializer_result(serializer_class, data):
    serializer = serializer_class(data=data)
    return dict(serializer.validated_data) if serializer.is_valid() else None


@pytest.mark.parametrize(
    ("serializer_class", "data"),
    [(NextTaskRequestSerializer, d) for d in NEXT_TASK_BODIES] + [(SubmitSerializer, d) for d in SUBMIT_BODIES],
)
def test_accept_is_the_serializer_or_declines(serializer_class, data):
    expected = _serializer_result(serializer_class, data)
    found = serializer_class.accept(data)
    if found is not None:
        assert expected is not None, "accept() let through what the serializer refuses"
        assert found == expected and [type(v) for v in found.values()] == [type(expected[k]) for k in found]
    if expected is None:
        with pytest.raises(ValidationError) as refused:
            validated(serializer_class, data)
        serializer = serializer_class(data=data)
        serializer.is_valid()
        assert refused.value.detail == serializer.errors  # the serializer's own messages
    else:
        assert validated(serializer_class, data) == expected


def test_the_plain_bodies_take_the_shortcut():
    assert NextTaskRequestSerializer.accept({}) == {"held": []}
    assert NextTaskRequestSerializer.accept({"held": [3, 4]}) == {"held": [3, 4]}
    found = SubmitSerializer.accept({"scores": {"comprehensive": 0.5}, "idempotency_key": KEY, "time_spent_ms": 900})
    assert found == {
        "scores": {"comprehensive": 0.5},
        "idempotency_key": uuid.UUID(KEY),
        "time_spent_ms": 900,
        "ui_version": "",
    }
