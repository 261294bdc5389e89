"""Behind trusted proxies the client's address is the one the outermost proxy saw (AESP_TRUSTED_PROXY_COUNT,
aesplatform.common.proxy); the login lockout keys on it, and what a client writes in X-Forwarded-For itself is
never believed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.test import Client

from aesplatform.common.proxy import forwarded_client_address
from tests import factories
from tests.factories import TEST_PASSWORD

PROXY = "10.0.0.5"  # the address gunicorn sees: the proxy's


@pytest.mark.parametrize(
    ("forwarded_for", "trusted", "expected"),
    [
        ("203.0.113.9", 1, "203.0.113.9"),  # the client, as the only proxy appended it
        ("6.6.6.6, 203.0.113.9", 1, "203.0.113.9"),  # the client's own entry on the left is ignored
        ("6.6.6.6, 203.0.113.9, 10.1.1.1", 2, "203.0.113.9"),  # a load balancer, then nginx
        ("2001:db8::1", 1, "2001:db8::1"),
        ("203.0.113.9", 2, None),  # did not pass through both proxies
        ("", 1, None),
        ("not-an-address", 1, None),
        ("203.0.113.9", 0, None),
    ],
)
def test_the_client_address_is_the_entry_the_outermost_trusted_proxy_appended(forwarded_for, trusted, expected):
    assert forwarded_client_address(forwarded_for, trusted) == expected


@pytest.fixture
def behind_one_proxy(settings):
    settings.AESP_TRUSTED_PROXY_COUNT = 1
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    cache.clear()


def _login(username: str, password: str, *, client_address: str, claimed: str = "") -> tuple[Client, int]:
    client = Client(REMOTE_ADDR=PROXY)
    forwarded = f"{claimed}, {client_address}" if claimed else client_address
    response = client.post("/login/", {"username": username, "password": password}, HTTP_X_FORWARDED_FOR=forwarded)
    return client, response.status_code


@pytest.mark.django_db
def test_behind_a_proxy_one_clients_failures_lock_out_that_client_not_everyone_with_the_username(behind_one_proxy):
    user = factories.annotator()
    for _ in range(3):
        _login(user.username, "wrong-password", client_address="198.51.100.1")
    assert _login(user.username, TEST_PASSWORD, client_address="198.51.100.1")[1] == 429
    client, status = _login(user.username, TEST_PASSWORD, client_address="198.51.100.2")
    assert status == 302 and "_auth_user_id" in client.session
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.1"}


@pytest.mark.django_db
def test_an_address_a_client_claims_in_the_header_is_not_believed(behind_one_proxy):
    user = factories.annotator()
    for k in range(3):  # a new claimed address each time does not escape the lockout
        _login(user.username, "wrong-password", client_address="198.51.100.7", claimed=f"192.0.2.{k}")
    assert _login(user.username, TEST_PASSWORD, client_address="198.51.100.7", claimed="192.0.2.99")[1] == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}


@pytest.mark.django_db
def test_without_a_trusted_proxy_the_header_is_ignored(settings):
    settings.AESP_TRUSTED_PROXY_COUNT = 0
    settings.AXES_FAILURE_LIMIT = 3
    cache.clear()
    user = factories.annotator()
    for k in range(3):
        _login(user.username, "wrong-password", client_address=f"198.51.100.{k}")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {PROXY}
