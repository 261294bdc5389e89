from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination

# The default page size is REST_FRAMEWORK["PAGE_SIZE"] in settings.py (both paginations below read it).
MAX_PAGE_SIZE = 500


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


class DefaultPagination(StrictPageSizeMixin, PageNumberPagination):
    pass


class KeysetPagination(StrictPageSizeMixin, CursorPagination):
    """Newest first by id; a cursor instead of page numbers (stable while rows are added)."""

    ordering = "-id"
