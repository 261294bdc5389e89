"""Per-request SQL statement count and time, for the page benchmark (bench/pages.py) only.

Installed only when AESP_QUERY_STATS_HEADER is on (off by default, and never to be turned on in production: it
tells any client how many statements its request ran). It wraps every statement of the request's connection
(django's execute_wrapper, no DEBUG needed) and answers with `X-Query-Count` (statements) and `X-Query-Ms`
(their time, milliseconds) on every response.
"""

from __future__ import annotations

import time

from django.db import connection


class QueryStatsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        stats = [0, 0.0]

        def wrapper(execute, sql, params, many, context):
            t = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                stats[0] += 1
                stats[1] += time.perf_counter() - t

        with connection.execute_wrapper(wrapper):
            response = self.get_response(request)
            if getattr(response, "streaming", False):
                return response  # its rows are read after this returns: no honest figure to give
        response["X-Query-Count"] = str(stats[0])
        response["X-Query-Ms"] = f"{stats[1] * 1000:.1f}"
        return response
