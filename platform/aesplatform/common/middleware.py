"""The database being unreachable (restarting, failing over) answers 503 with a clear reason, not a 500 page.

A 503 tells clients that the same request may succeed later: the annotation page and API clients retry a submit
with the same idempotency key, which stores it exactly once. Django closes the broken connection at the end of
the request, so the next request reconnects (DJANGO_CONN_HEALTH_CHECKS=true checks a kept one before reuse instead).
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2
MESSAGE = "The database is unavailable at the moment; try the request again shortly."


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            response = JsonResponse({"detail": MESSAGE, "code": "database_unavailable"}, status=503)
        else:
            response = HttpResponse(MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
