"""`make run` (the development profile) runs with DEBUG off: friendly 404/500 pages, static files still served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def _development_setting(expression: str, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DJANGO_ENV="development", DJANGO_SETTINGS_MODULE="aesplatform.settings", **extra)
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_development_profile_has_debug_off_unless_asked_for():
    assert _development_setting("settings.DEBUG") == "False"
    assert _development_setting("settings.DEBUG", DJANGO_DEBUG="true") == "True"


def test_an_unknown_page_is_a_friendly_404_without_the_url_list(curator_user, settings):
    settings.DEBUG = False
    client = Client()
    client.force_login(curator_user)
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    body = page.content.decode()
    assert "Page not found" in body and 'data-testid="not-found"' in body
    assert "Go to the home page" in body
    assert "URLconf" not in body and "filter-runs" not in body


def test_a_server_error_is_a_friendly_500_page(curator_user, settings):
    from django.test import RequestFactory

    from aesplatform.common import errors

    settings.DEBUG = False
    response = errors.server_error(RequestFactory().get("/some-page/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content and b"Traceback" not in response.content


def test_static_files_are_served_with_debug_off(curator_user, settings):
    settings.DEBUG = False
    response = Client().get("/static/annotator_ui/css/app.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) if response.streaming else response.content


def test_an_anonymous_visitor_gets_the_same_friendly_404_with_a_way_to_sign_in(settings):
    settings.DEBUG = False
    page = Client().get("/no-such-page/")
    assert page.status_code == 404
    assert "Page not found" in page.content.decode() and 'href="/login/"' in page.content.decode()
