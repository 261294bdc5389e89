"""Production settings and the deployment files are valid as shipped."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AESP_"))}
    env.update(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="aes.example.org",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/aesplatform",
    )
    env.update(extra)
    return env


def test_production_settings_pass_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


_SHOW_SECURITY_SETTINGS = """
import json
from django.conf import settings as s
names = ["DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY",
         "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SAMESITE", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
         "SECURE_HSTS_PRELOAD", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SECURE_CONTENT_TYPE_NOSNIFF",
         "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS", "AXES_ENABLED", "AXES_FAILURE_LIMIT"]
print(json.dumps({n: getattr(s, n) for n in names} | {"csp": s.CONTENT_SECURITY_POLICY["DIRECTIVES"]}))
"""


def _production_settings(**extra: str) -> dict:
    result = _manage("shell", "-c", _SHOW_SECURITY_SETTINGS, env=_production_env(**extra))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_has_secure_cookies_hsts_https_and_strict_headers():
    s = _production_settings()
    assert s["DEBUG"] is False
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SESSION_COOKIE_HTTPONLY"] and s["CSRF_COOKIE_HTTPONLY"]
    assert s["SESSION_COOKIE_SAMESITE"] == "Lax" and s["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert s["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and s["SECURE_HSTS_PRELOAD"]
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["SECURE_CONTENT_TYPE_NOSNIFF"] and s["SECURE_REFERRER_POLICY"] == "same-origin"
    assert s["X_FRAME_OPTIONS"] == "DENY"
    assert s["AXES_ENABLED"] and s["AXES_FAILURE_LIMIT"] == 5
    assert s["csp"]["script-src"] == ["'self'"] and s["csp"]["frame-ancestors"] == ["'none'"]


def test_production_https_settings_come_from_the_environment():
    s = _production_settings(
        DJANGO_SECURE_HSTS_SECONDS="600", DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        DJANGO_SECURE_HSTS_PRELOAD="false", DJANGO_SECURE_SSL_REDIRECT="false", DJANGO_SECURE_PROXY_SSL_HEADER="",
        AESP_LOGIN_FAILURE_LIMIT="3",
    )
    assert s["SECURE_HSTS_SECONDS"] == 600
    assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False and s["SECURE_HSTS_PRELOAD"] is False
    assert s["SECURE_SSL_REDIRECT"] is False
    assert s["SECURE_PROXY_SSL_HEADER"] is None  # no proxy: a client's X-Forwarded-Proto is not believed
    assert s["AXES_FAILURE_LIMIT"] == 3


def test_production_refuses_to_start_without_a_secret_key():
    env = _production_env()
    del env["DJANGO_SECRET_KEY"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_an_unknown_profile_is_a_clear_error():
    result = _manage("check", env=_production_env(DJANGO_ENV="staging"))
    assert result.returncode != 0
    assert "DJANGO_ENV must be development, test or production" in result.stderr


def _compose_config() -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 60, "POSTGRES_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "a:b",
           "S3_ACCESS_KEY": "key", "S3_SECRET_KEY": "secret"}
    return subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_compose_services_share_only_database_broker_and_object_store():
    """Any worker can run on another host: no volume is mounted by two app services, and all of them keep media,
    exports and checkpoints in the object store."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed here (.ci/run installs Debian's docker-compose)")
    import yaml

    result = _compose_config()
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert "objectstore" in services
    app_services = [name for name, svc in services.items() if svc.get("image") == "humanaes:latest"]
    assert {"web", "worker-cpu", "worker-gpu", "worker-humanaesexpert", "beat"} <= set(app_services)
    mounted_by: dict[str, list[str]] = {}
    for name in app_services:
        service = services[name]
        assert service["environment"]["AESP_STORAGE_BACKEND"] == "s3", name
        assert service["environment"]["AESP_S3_ENDPOINT_URL"] == "http://objectstore:8333", name
        for volume in service.get("volumes", []):
            if isinstance(volume, str):  # docker-compose 1.x prints the short syntax: source:target[:mode]
                source, _target, *mode = volume.split(":")
                volume = {"type": "bind" if "/" in source else "volume", "source": source, "read_only": mode == ["ro"]}
            if volume.get("type") == "volume":
                mounted_by.setdefault(volume["source"], []).append(name)
            elif volume.get("type") == "bind":
                assert volume.get("read_only"), f"{name} writes to a host folder: {volume}"
    shared = {source: names for source, names in mounted_by.items() if len(names) > 1}
    assert shared == {}, f"volumes shared between services: {shared}"


def test_docker_compose_file_is_valid():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed here (.ci/run installs Debian's docker-compose)")
    result = _compose_config()
    assert result.returncode == 0, result.stderr
    for service in ("proxy:", "web:", "worker-cpu:", "worker-gpu:", "beat:", "postgres:", "redis:", "flower:"):
        assert service in result.stdout
    # exactly one celery beat: it queues the job sweep that re-queues jobs whose worker died
    beat = ("\n" + result.stdout.split("services:\n", 1)[1]).split("\n  beat:\n", 1)[1]
    assert "celery -A aesplatform beat" in beat.split("\n  ", 1)[0] + beat
    assert "capabilities:" in result.stdout and "gpu" in result.stdout
    # only the buffering proxy is published; gunicorn's sync workers are reached through it
    services = "\n" + result.stdout.split("services:\n", 1)[1]
    web = services.split("\n  web:\n", 1)[1].split("\n  worker-cpu:\n", 1)[0]
    proxy = services.split("\n  proxy:\n", 1)[1].split("\n  redis:\n", 1)[0]
    assert "ports:" not in web and "gunicorn -c deploy/gunicorn.conf.py" in web
    assert (
        "published: 8000" in proxy and "deploy/nginx.conf.template:/etc/nginx/templates/default.conf.template" in proxy
    )


def _gunicorn_settings(**env: str) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--print-config"], cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("WEB_")}, **env},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(
        (name.strip(), value.strip()) for name, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )


def test_gunicorn_configuration_serves_the_app_with_exclusively_woken_sync_workers():
    settings = _gunicorn_settings()
    assert settings["wsgi_app"] == "aesplatform.wsgi:application"
    assert settings["worker_class"] == "aesplatform.common.gunicorn_worker.ExclusiveWakeSyncWorker"
    assert int(settings["workers"]) == 2 * os.cpu_count() + 1
    assert settings["bind"] == "['127.0.0.1:8000']" and settings["timeout"] == "120"
    assert settings["accesslog"] == "None"


def test_gunicorn_configuration_comes_from_the_environment_and_empty_means_default():
    settings = _gunicorn_settings(WEB_BIND="0.0.0.0:9000", WEB_CONCURRENCY="7", WEB_TIMEOUT="", WEB_ACCESS_LOG="-",
                                  WEB_MAX_REQUESTS="0")
    assert settings["bind"] == "['0.0.0.0:9000']" and settings["workers"] == "7"
    assert settings["timeout"] == "120" and settings["accesslog"] == "-" and settings["max_requests"] == "0"


def test_migrations_match_the_models():
    env = {**os.environ, "DJANGO_ENV": "development", "AESP_VAR_DIR": os.environ["AESP_VAR_DIR"]}
    result = _manage("makemigrations", "--check", "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_openapi_schema_generates_without_warnings(tmp_path):
    env = {**os.environ, "DJANGO_ENV": "development"}
    result = _manage("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/api/me/" in (tmp_path / "schema.yml").read_text()
