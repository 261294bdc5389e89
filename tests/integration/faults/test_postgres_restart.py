"""PostgreSQL restarts while annotators submit: the server answers 503 (JSON, retryable) while it is down, recovers
by itself, and the client's retries with the same idempotency key store every annotation exactly once.

The database is a private cluster started for this test (a copy of the test database), served by gunicorn with
persistent connections (CONN_MAX_AGE) and health checks; the machine's shared PostgreSQL is never restarted.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
import requests
from django.db import connection
from rest_framework.authtoken.models import Token

from model_core.standard import OVERALL
from tests import factories
from tests.integration.faults.services import Gunicorn, PrivatePostgres, postgres_missing, web_env
from tests.support.annotation import campaign_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANNOTATORS = 3
IMAGES_EACH = 12


@pytest.fixture
def private_postgres():
    missing = postgres_missing()
    if missing:
        pytest.skip(missing)
    server = PrivatePostgres()
    try:
        server.init()
        yield server
    finally:
        server.remove()


class RetryingAnnotator:
    """What the annotation page does: lease, rate, submit; a failed or 5xx submit is sent again with the same key."""

    def __init__(self, base_url: str, token: str, campaign_id: int):
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"
        self.base_url, self.campaign_id = base_url, campaign_id
        self.keys: list[str] = []
        self.unavailable: list[requests.Response] = []  # the 503 answers seen while the database was down
        self.other_errors: list[str] = []

    def _post(self, path: str, body: dict) -> requests.Response:
        while True:
            try:
                response = self.http.post(self.base_url + path, json=body, timeout=30)
            except requests.ConnectionError as exc:
                self.other_errors.append(f"{path}: {exc}")
                time.sleep(0.2)
                continue
            if response.status_code == 503:
                self.unavailable.append(response)
                time.sleep(0.2)
                continue
            if response.status_code >= 500:
                self.other_errors.append(f"{path}: {response.status_code} {response.text[:200]}")
                time.sleep(0.2)
                continue
            return response

    def run(self, stop_after: int | None = None) -> None:
        while True:
            lease = self._post(f"/api/campaigns/{self.campaign_id}/next-task/", {"held": []})
            if lease.status_code == 204:
                return
            assert lease.status_code == 200, lease.text
            key = str(uuid.uuid4())
            self.keys.append(key)
            body = {"scores": {OVERALL.key: 0.1 + 0.8 * (len(self.keys) % 7) / 7}, "idempotency_key": key,
                    "time_spent_ms": 500}
            answer = self._post(f"/api/assignments/{lease.json()['id']}/submit/", body)
            assert answer.status_code in (200, 201), answer.text


def test_a_postgres_restart_during_submits_loses_and_doubles_nothing(private_postgres, tmp_path):
    users = [factories.annotator() for _ in range(ANNOTATORS)]
    campaign = campaign_for(users, images=IMAGES_EACH * ANNOTATORS, redundancy=1)
    tokens = [Token.objects.create(user=user).key for user in users]
    private_postgres.copy_database_from(connection.settings_dict, "aesp")

    web = Gunicorn(web_env(DATABASE_URL=private_postgres.url("aesp"), DJANGO_CONN_MAX_AGE="60"),
                   tmp_path / "gunicorn.log", workers=2)
    web.start()
    try:
        clients = [RetryingAnnotator(web.url, token, campaign.pk) for token in tokens]
        errors: list[BaseException] = []

        def annotate(client):
            try:
                client.run()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=annotate, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        # restart the database while the submits go on: down for a moment (immediate = a crash), then back
        deadline = time.monotonic() + 60
        while sum(len(c.keys) for c in clients) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        private_postgres.stop("immediate")
        time.sleep(1.5)
        private_postgres.start()
        for thread in threads:
            thread.join(timeout=180)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
    finally:
        web.stop()

    sent = [key for c in clients for key in c.keys]
    assert len(sent) == IMAGES_EACH * ANNOTATORS
    unavailable = [r for c in clients for r in c.unavailable]
    assert unavailable, "no request met the database down"
    for response in unavailable:  # a clear, retryable JSON error, not an HTML 500 page
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["code"] == "database_unavailable" and response.headers.get("Retry-After")
    assert not [e for c in clients for e in c.other_errors if " 500 " in e], web.logs()[-3000:]
    with psycopg.connect(private_postgres.url("aesp")) as db:
        stored = [row[0] for row in db.execute("SELECT idempotency_key::text FROM annotation_annotation")]
        per_task = db.execute("SELECT count(*), count(DISTINCT task_id) FROM annotation_annotation").fetchone()
    assert sorted(stored) == sorted(sent)  # every annotation once: none lost, none doubled
    assert per_task == (len(sent), len(sent))
