"""A refused form POST answers on the page itself (with what went wrong), not with a redirect that loses it."""

from __future__ import annotations

from django.http import HttpResponse


def page_with_error(view_class, request, *, status: int, **view_kwargs) -> HttpResponse:
    """Render `view_class` as its GET would, with `view_kwargs` (the error, the bound form), under `status`."""
    request.method = "GET"
    response = view_class.as_view()(request, **view_kwargs)
    response.status_code = status
    return response
