"""The production serving stack, for real: nginx with the shipped site (deploy/nginx.conf.template) in front of
gunicorn with the shipped configuration (deploy/gunicorn.conf.py: sync workers), on the test database.

gunicorn's sync workers serve one request at a time; the proxy is what keeps a slow client from holding one. The
tests show that requests go through with their headers, that an oversized body is refused before the application
sees it, and that clients trickling their requests in do not stop the workers from serving everyone else.
"""

from __future__ import annotations

import re
import socket
import time
import uuid

import pytest
import requests
from axes.models import AccessAttempt
from rest_framework.authtoken.models import Token

from aesplatform.annotation.models import Annotation
from aesplatform.catalog.models import ImportJob
from tests import factories
from tests.factories import TEST_PASSWORD
from tests.integration.faults.services import Gunicorn, Nginx, current_database_url, nginx_missing, web_env
from tests.support.annotation import campaign_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 2


@pytest.fixture
def stack(tmp_path):
    """(gunicorn, nginx): gunicorn with WORKERS sync workers, nginx in front allowing bodies up to 1 MiB."""
    if why := nginx_missing():
        pytest.fail(why, pytrace=False)
    web = Gunicorn(web_env(DATABASE_URL=current_database_url(), DJANGO_CONN_MAX_AGE="0", AESP_TRUSTED_PROXY_COUNT="1"),
                   tmp_path / "gunicorn.log", workers=WORKERS)
    web.start()
    proxy = Nginx(tmp_path, upstream=f"127.0.0.1:{web.port}", client_max_body_size="1m")
    try:
        proxy.start()
        yield web, proxy
    finally:
        proxy.stop()
        web.stop()


def test_through_the_proxy_an_annotator_signs_in_and_rates_and_a_token_client_leases_and_submits(stack):
    _, proxy = stack
    annotator = factories.annotator()
    campaign = campaign_for([annotator], images=3, redundancy=1)

    browser = requests.Session()
    page = browser.get(f"{proxy.url}/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    signed_in = browser.post(
        f"{proxy.url}/login/",
        timeout=10,
        headers={"Referer": f"{proxy.url}/login/"},
        data={"username": annotator.username, "password": TEST_PASSWORD, "csrfmiddlewaretoken": csrf},
    )
    assert signed_in.status_code == 200 and "/login/" not in signed_in.url
    annotate = browser.get(f"{proxy.url}/annotate/{campaign.pk}/", timeout=10)
    assert annotate.status_code == 200
    assert "content-security-policy" in annotate.headers  # the application's headers come through

    api = {"Authorization": f"Token {Token.objects.create(user=annotator).key}"}
    lease = requests.post(f"{proxy.url}/api/campaigns/{campaign.pk}/next-task/", json={}, headers=api, timeout=10)
    assert lease.status_code == 200, lease.text
    body = {"scores": {"comprehensive": 0.7}, "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 900}
    first = requests.post(
        f"{proxy.url}/api/assignments/{lease.json()['id']}/submit/", json=body, headers=api, timeout=10
    )
    again = requests.post(
        f"{proxy.url}/api/assignments/{lease.json()['id']}/submit/", json=body, headers=api, timeout=10
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert Annotation.objects.filter(annotator=annotator).count() == 1


def test_a_body_over_the_proxy_limit_is_refused_before_the_application_and_creates_nothing(stack):
    web, proxy = stack
    curator = factories.curator()
    api = {"Authorization": f"Token {Token.objects.create(user=curator).key}"}
    jobs_before = ImportJob.objects.count()

    answer = requests.post(f"{proxy.url}/api/imports/", headers=api, timeout=30, data={"kind": "upload"},
                           files={"files": ("big.png", b"\0" * (2 * 1024 * 1024), "image/png")})

    assert answer.status_code == 413
    assert ImportJob.objects.count() == jobs_before
    assert "/api/imports/" not in web.logs()  # gunicorn never saw it (its errors and warnings are in that log)


def _start_trickling(port: int) -> socket.socket:
    """A client that sent its request line, headers and part of its body, and sends nothing more for now."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 40\r\nConnection: close\r\n\r\n{\"username\": ")
    return sock


def test_clients_trickling_their_requests_do_not_hold_the_workers_behind_the_proxy(stack):
    web, proxy = stack
    # more slow clients than gunicorn has workers: straight to gunicorn each would hold a worker until its body
    # arrived; behind nginx they hold nginx connections only
    slow = [_start_trickling(proxy.port) for _ in range(WORKERS + 2)]
    try:
        time.sleep(0.5)  # let nginx accept them all
        for _ in range(5):
            assert requests.get(f"{proxy.url}/health/", timeout=10).status_code == 200
        for sock in slow:
            sock.sendall(b'"nobody", "password": "x"}'.ljust(27, b" "))
        answers = [sock.recv(4096).split(b"\r\n", 1)[0] for sock in slow]
    finally:
        for sock in slow:
            sock.close()
    # each slow request still got its answer from the application once its body was complete
    assert all(re.match(rb"HTTP/1\.1 (400|401|429)", line) for line in answers), answers


def test_the_login_lockout_sees_the_address_nginx_saw_not_the_one_a_client_claims(stack):
    _, proxy = stack
    user = factories.annotator()
    for k in range(2):
        answer = requests.post(f"{proxy.url}/api/auth/token/", json={"username": user.username, "password": "wrong"},
                               headers={"X-Forwarded-For": f"192.0.2.{k}"}, timeout=10)
        assert answer.status_code == 400
    assert list(
        AccessAttempt.objects.filter(username=user.username).values_list("ip_address", "failures_since_start")
    ) == [("127.0.0.1", 2)]
