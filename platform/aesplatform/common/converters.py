"""URL path converters shared by the API and the pages."""

from __future__ import annotations

from django.urls import register_converter

# Primary keys are 64-bit signed integers on PostgreSQL and SQLite: a larger number names no row. Matching it as a
# path would carry it to the database, where SQLite's driver raises OverflowError (a 500) before any lookup.
MAX_ID = 2**63 - 1


class IdConverter:
    """`<id:pk>`: a decimal id in 0..2^63-1; anything larger does not match the route (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is beyond the largest id")  # Django treats it as no match
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


register_converter(IdConverter, "id")
