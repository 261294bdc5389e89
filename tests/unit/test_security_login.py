"""Login rate limiting (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from one address,
that pair cannot log in (not even with the right password) until the cool-off has passed; the form login, the
admin login and the API token endpoint alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from tests import factories
from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    cache.clear()  # the token endpoint's DRF throttle counts in the cache


def _form_login(username: str, password: str, *, ip: str = "10.0.0.1", path: str = "/login/"):
    client = Client(REMOTE_ADDR=ip)
    response = client.post(path, {"username": username, "password": password})
    return client, response


def _fail(username: str, times: int, **kwargs) -> None:
    for _ in range(times):
        _, response = _form_login(username, "wrong-password", **kwargs)
        assert response.status_code in (200, 429)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_a_wrong_password_below_the_limit_is_an_ordinary_error_and_the_right_one_works():
    user = factories.annotator()
    _fail(user.username, 2)
    client, response = _form_login(user.username, TEST_PASSWORD)
    assert response.status_code == 302 and _logged_in(client)


def test_after_the_limit_even_the_right_password_is_refused_with_a_clear_message():
    user = factories.annotator()
    _fail(user.username, 3)
    client, response = _form_login(user.username, TEST_PASSWORD)
    assert response.status_code == 429
    assert not _logged_in(client)
    html = response.content.decode()
    assert 'data-testid="login-locked"' in html and "Too many failed login attempts" in html
    assert "Try again in 15 minutes" in html
    assert f'value="{user.username}"' in html  # the form is there again, the username kept


def test_the_lock_is_per_username_and_address():
    victim, other = factories.annotator(), factories.annotator()
    _fail(victim.username, 3, ip="10.0.0.1")
    assert _form_login(other.username, TEST_PASSWORD, ip="10.0.0.1")[1].status_code == 302  # other user, same address
    assert _form_login(victim.username, TEST_PASSWORD, ip="10.0.0.2")[1].status_code == 302  # same user, other address
    assert _form_login(victim.username, TEST_PASSWORD, ip="10.0.0.1")[1].status_code == 429


def test_the_lock_ends_after_the_cool_off():
    user = factories.annotator()
    _fail(user.username, 3)
    assert _form_login(user.username, TEST_PASSWORD)[1].status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    client, response = _form_login(user.username, TEST_PASSWORD)
    assert response.status_code == 302 and _logged_in(client)


def test_a_successful_login_resets_the_count():
    user = factories.annotator()
    _fail(user.username, 2)
    assert _form_login(user.username, TEST_PASSWORD)[1].status_code == 302
    _fail(user.username, 2)
    assert _form_login(user.username, TEST_PASSWORD)[1].status_code == 302


def test_the_admin_login_is_rate_limited_too():
    admin = factories.admin()
    _fail(admin.username, 3, path="/admin/login/")
    client, response = _form_login(admin.username, TEST_PASSWORD, path="/admin/login/")
    assert response.status_code == 429 and not _logged_in(client)
    assert "Too many failed login attempts" in response.content.decode()


def test_failures_on_the_form_count_for_the_admin_login_and_the_other_way_round():
    user = factories.admin()
    _fail(user.username, 2, path="/admin/login/")
    _fail(user.username, 1, path="/login/")
    assert _form_login(user.username, TEST_PASSWORD, path="/login/")[1].status_code == 429


def test_the_api_token_endpoint_locks_out_with_a_429_json_error():
    user = factories.annotator()
    client = Client(REMOTE_ADDR="10.0.0.9")
    for _ in range(3):
        response = client.post("/api/auth/token/", {"username": user.username, "password": "nope"},
                               content_type="application/json")
        assert response.status_code in (400, 429)
    response = client.post("/api/auth/token/", {"username": user.username, "password": TEST_PASSWORD},
                           content_type="application/json")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "locked_out" and "Too many failed login attempts" in body["detail"]


def test_the_api_token_endpoint_still_gives_a_token_below_the_limit():
    user = factories.annotator()
    client = Client(REMOTE_ADDR="10.0.0.10")
    assert client.post("/api/auth/token/", {"username": user.username, "password": "nope"},
                       content_type="application/json").status_code == 400
    response = client.post("/api/auth/token/", {"username": user.username, "password": TEST_PASSWORD},
                           content_type="application/json")
    assert response.status_code == 200 and response.json()["token"]
