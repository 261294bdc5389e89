import math

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

# The default page size is REST_FRAMEWORK["PAGE_SIZE"] in settings.py (both paginations below read it).
MAX_PAGE_SIZE = 500
# Page-number lists count their rows up to this many (a LIMITed count); beyond it `count` is null and
# `count_capped` true ("more than COUNT_CAP"), unless the view has an exact stored count.
COUNT_CAP = 10_000


class StrictPageSizeMixin:
    """`page_size` must be a positive integer when given (DRF ignores anything else and answers the default page:
    bad input gets a clear 400 instead). Sizes above `max_page_size` are capped, as in DRF."""

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param) if self.page_size_query_param else None
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError({self.page_size_query_param: ["A positive integer is required."]})
        return min(size, self.max_page_size) if self.max_page_size else size


def capped_count(queryset, *, cap: int) -> int:
    """How many rows the queryset has, counting at most `cap + 1` of them (one statement: COUNT over a LIMITed
    subquery, so a million-row table costs as much as `cap` rows). More than `cap` when the result is `cap + 1`."""
    if not hasattr(queryset, "query"):  # a list
        return min(len(queryset), cap + 1)
    rows = queryset.order_by()
    if not rows.query.distinct:
        rows = rows.values("pk")
    return rows[: cap + 1].count()


class DefaultPagination(StrictPageSizeMixin, PageNumberPagination):
    """Page numbers, with a count that never walks a large table.

    `count` is exact: from the view's stored count where it has one (a counter kept with the rows, set as
    `view.stored_count` before paginating), else counted up to `count_cap` rows. Over the cap, `count` is null and
    `count_capped` is true: the list has more than `count_cap` rows (never an estimate). `next` is then found by
    reading one row more than the page, and `page=last` is refused (its number is not known).
    """

    count_cap = COUNT_CAP

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        page_size = self.get_page_size(request)
        if not page_size:
            return None
        stored = getattr(view, "stored_count", None)
        if stored is not None:
            self.count, self.count_capped = stored, False
        else:
            counted = capped_count(queryset, cap=self.count_cap)
            self.count_capped = counted > self.count_cap
            self.count = None if self.count_capped else counted
        self.page_number = self._page_number(request, page_size)
        offset = (self.page_number - 1) * page_size
        rows = list(queryset[offset: offset + page_size + 1])
        self.has_next = len(rows) > page_size
        rows = rows[:page_size]
        if not rows and self.page_number > 1:
            raise NotFound("Invalid page.")
        return rows

    def _page_number(self, request, page_size: int) -> int:
        raw = request.query_params.get(self.page_query_param, 1)
        if raw in self.last_page_strings:
            if self.count is None:
                raise NotFound(f"Invalid page: the last page is not known (more than {self.count_cap} rows).")
            return max(1, math.ceil(self.count / page_size))
        try:
            number = int(raw)
        except (TypeError, ValueError):
            number = 0
        if number < 1 or (self.count is not None and number > max(1, math.ceil(self.count / page_size))):
            raise NotFound("Invalid page.")
        return number

    def get_paginated_response(self, data):
        return Response({
            "count": self.count,
            "count_capped": self.count_capped,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
            "results": data,
        })

    def get_next_link(self):
        if not self.has_next:
            return None
        return replace_query_param(self.request.build_absolute_uri(), self.page_query_param, self.page_number + 1)

    def get_previous_link(self):
        if self.page_number <= 1:
            return None
        url = self.request.build_absolute_uri()
        if self.page_number == 2:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, self.page_number - 1)

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["required"] = ["count", "count_capped", "results"]
        response["properties"]["count"] = {
            "type": "integer", "nullable": True, "example": 123,
            "description": (
                f"The exact number of rows, or null when there are more than {self.count_cap} (see `count_capped`): "
                "large lists are counted only that far."
            ),
        }
        response["properties"] = {
            "count": response["properties"]["count"],
            "count_capped": {
                "type": "boolean", "example": False,
                "description": f"True when the list has more than {self.count_cap} rows (`count` is then null).",
            },
            **{key: value for key, value in response["properties"].items() if key != "count"},
        }
        return response


class KeysetPagination(StrictPageSizeMixin, CursorPagination):
    """Newest first by id; a cursor instead of page numbers (stable while rows are added)."""

    ordering = "-id"
