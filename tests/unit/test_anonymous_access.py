"""Nothing but login, health and static files is reachable without signing in, for every URL that exists."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "health", "api-token"}
PUBLIC_PREFIXES = ("admin/",)  # Django admin guards itself: it redirects to its own login page


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def _concrete(route: str) -> str:
    """Turn a route or regex into a URL, filling parameters with 1."""
    route = re.sub(r"<(?:\w+:)?\w+>", "1", route)
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    route = route.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")
    return "/" + route


def all_routes():
    return sorted(set(_walk(get_resolver().url_patterns)))


def test_every_non_public_route_refuses_anonymous_users(client):
    checked = 0
    for route, name in all_routes():
        if name in PUBLIC or route.startswith(PUBLIC_PREFIXES) or "(?" in route.replace("(?P", ""):
            continue
        url = _concrete(route)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (301, 302, 401, 403, 404, 405), (method, url, response.status_code)
            if response.status_code in (301, 302):
                assert "/login" in response["Location"] or "/admin/login" in response["Location"], (url, response["Location"])
            checked += 1
    assert checked > 10


def test_the_public_routes_answer_anonymous_users(client):
    assert client.get("/health/").status_code == 200
    assert client.get("/login/").status_code == 200
