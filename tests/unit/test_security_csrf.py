"""CSRF: every form carries the token, and every state-changing URL refuses a signed-in browser's request without it
(pages, the admin, and the API with session authentication). API token authentication needs no CSRF token: a
browser never sends an Authorization header by itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token

from tests import factories

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
UNSAFE = ("post", "put", "patch", "delete")
# Views that accept unsafe methods without a session by design: they authenticate nobody from cookies.
CSRF_EXEMPT_BY_DESIGN = {"/api/auth/token/"}  # exchanges a password for a token; authentication_classes = []


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def _concrete(route: str) -> str | None:
    if route.startswith("^") or "(?P" in route:
        return None  # a regex route (format suffixes): its path() twin is walked instead
    route = re.sub(r"<(?:int|id):\w+>", "999999", route)
    route = re.sub(r"<(?:str|slug|path):\w+>", "x", route)
    route = re.sub(r"<\w+>", "x", route)
    return "/" + route


def _unsafe_methods(callback) -> list[str]:
    if getattr(callback, "actions", None):  # a DRF viewset route: method -> action
        return [m for m in callback.actions if m in UNSAFE]
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view is None:
        return ["post"]  # a function view: it may handle POST
    return [m for m in UNSAFE if hasattr(view, m)]


def state_changing_routes(*, include_admin: bool = False) -> list[tuple[str, str]]:
    routes = []
    for route, callback in _walk(get_resolver().url_patterns):
        path = _concrete(route)
        if path is None or (path.startswith("/admin/") and not include_admin):
            continue
        routes.extend((path, method) for method in _unsafe_methods(callback))
    return sorted(set(routes))


def test_the_walk_finds_the_forms_and_api_writes_it_must():
    routes = state_changing_routes()
    paths = {p for p, _ in routes}
    for expected in ("/login/", "/logout/", "/campaigns/new/", "/filtering/999999/thresholds/", "/imports/",
                     "/models/999999/promote/", "/api/campaigns/", "/api/assignments/999999/submit/",
                     "/api/imports/", "/api/exports/", "/api/model-versions/999999/promote/"):
        assert expected in paths, expected
    assert len(routes) >= 40


@pytest.fixture
def csrf_client(admin_user):
    """A browser-like client: CSRF checks enforced, signed in by a session cookie as an admin (every role)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def _is_csrf_refusal(response) -> bool:
    return response.status_code == 403 and b"CSRF" in response.content


def test_every_state_changing_url_refuses_a_session_request_without_the_token(csrf_client):
    missed = []
    for path, method in state_changing_routes():
        if path in CSRF_EXEMPT_BY_DESIGN:
            continue
        response = getattr(csrf_client, method)(path, data={"x": "1"} if method == "post" else None)
        if not _is_csrf_refusal(response):
            missed.append(f"{method.upper()} {path} -> {response.status_code}")
    assert missed == []


def test_the_anonymous_login_form_needs_the_token_too():
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": "a", "password": "b"})
    assert _is_csrf_refusal(response)


def test_admin_forms_refuse_a_post_without_the_token(csrf_client):
    for path in ("/admin/auth/user/add/", "/admin/logout/", "/admin/auth/group/add/"):
        assert _is_csrf_refusal(csrf_client.post(path, {"name": "x"})), path


def test_the_same_requests_with_the_token_get_past_the_check(csrf_client):
    """The control: the refusals above are the CSRF check, not the views (the objects do not exist: 404/400)."""
    csrf_client.get("/")  # the layout renders {% csrf_token %}: the cookie is set
    token = csrf_client.cookies["csrftoken"].value
    for path in ("/campaigns/new/", "/models/999999/promote/", "/filtering/999999/thresholds/"):
        response = csrf_client.post(path, {"csrfmiddlewaretoken": token})
        assert not _is_csrf_refusal(response), path
    api = csrf_client.post("/api/campaigns/", {}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert api.status_code == 400  # validation, past the CSRF check
    assert not _is_csrf_refusal(csrf_client.post("/api/assignments/999999/skip/", HTTP_X_CSRFTOKEN=token))


def test_api_token_authentication_is_exempt_by_design(admin_user):
    token = Token.objects.create(user=admin_user)
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/campaigns/", {}, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token.key}"
    )
    assert response.status_code == 400  # validation: no CSRF token needed, no cookie involved


def test_every_post_form_in_the_templates_carries_the_token():
    missing = []
    for path in (REPO / "annotator_ui" / "templates").rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", text, flags=re.S | re.I):
            if "{% csrf_token %}" not in match.group(1):
                missing.append(f"{path.relative_to(REPO)}: {match.group(0)[:80]}")
    assert missing == []


def test_htmx_requests_carry_the_token_from_the_layout(csrf_client):
    """The layout sets hx-headers on <body>: every htmx request (also one outside a form) sends X-CSRFToken."""
    html = csrf_client.get("/").content.decode()
    match = re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"([A-Za-z0-9]+)\"\}'>", html)
    assert match, "no hx-headers with the CSRF token on <body>"
    response = csrf_client.post(
        "/filtering/999999/thresholds/", HTTP_X_CSRFTOKEN=match.group(1), HTTP_HX_REQUEST="true"
    )
    assert not _is_csrf_refusal(response)


def test_an_annotators_submit_without_the_token_is_refused_and_stores_nothing(db):
    """The annotate page's JS sends X-CSRFToken from data-csrf; without it the session request is refused."""
    from aesplatform.annotation.models import Annotation

    annotator = factories.annotator()
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    response = client.post("/api/assignments/1/submit/", {"scores": {}}, content_type="application/json")
    assert _is_csrf_refusal(response)
    assert Annotation.objects.count() == 0
