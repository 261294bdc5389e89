"""The web server's worker class (aesplatform.common.gunicorn_worker, the one deploy/gunicorn.conf.py names) serves
concurrent clients, all of them, and stops cleanly when gunicorn is told to."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.faults.services import Gunicorn, current_database_url, web_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_more_concurrent_clients_than_workers_are_all_served_and_sigterm_stops_the_server(tmp_path):
    web = Gunicorn(
        web_env(DATABASE_URL=current_database_url(), DJANGO_CONN_MAX_AGE="0"), tmp_path / "gunicorn.log", workers=2
    )
    web.start()
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda _: requests.get(f"{web.url}/health/", timeout=30).status_code, range(64)))
        assert answers == [200] * 64

        web.process.send_signal(signal.SIGTERM)
        assert web.process.wait(timeout=30) == 0
    finally:
        web.stop()
    logs = web.logs()
    assert "Traceback" not in logs and "Shutting down: Master" in logs
