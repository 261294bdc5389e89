"""The OpenAPI schema and Swagger UI are served to signed-in users, with Swagger's files shipped locally."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_schema_is_served_to_signed_in_users(annotator_client):
    response = annotator_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/imports/" in schema["paths"] and "/api/me/" in schema["paths"]


def test_swagger_ui_uses_shipped_static_files_not_a_cdn(client, django_user_model):
    from tests import factories

    user = factories.curator()
    client.force_login(user)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn." not in html and "unpkg" not in html
