from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests import factories

pytestmark = pytest.mark.django_db


def test_me_reports_the_roles_a_membership_implies(curator_client):
    response = curator_client.get("/api/me/")
    assert response.status_code == 200
    assert response.json()["roles"] == ["annotator", "curator"]


def test_anonymous_users_get_401_from_the_api(anonymous_client):
    for url in ("/api/me/", "/api/users/", "/api/schema/"):
        assert anonymous_client.get(url).status_code in (401, 403), url


def test_token_login_returns_a_token_that_authenticates(anonymous_client):
    user = factories.annotator()
    response = anonymous_client.post(
        "/api/auth/token/", {"username": user.username, "password": factories.TEST_PASSWORD}
    )
    assert response.status_code == 200
    token = response.json()["token"]
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anonymous_client.get("/api/me/").json()["username"] == user.username


def test_token_login_with_a_wrong_password_is_a_400(anonymous_client):
    user = factories.annotator()
    response = anonymous_client.post("/api/auth/token/", {"username": user.username, "password": "nope"})
    assert response.status_code == 400
    assert "token" not in response.json()


def test_annotators_cannot_list_users(annotator_client):
    assert annotator_client.get("/api/users/").status_code == 403


def test_curators_list_annotators_but_cannot_create_users(curator_client):
    factories.annotator(username="ann-a")
    listed = curator_client.get("/api/users/?role=annotator").json()["results"]
    assert "ann-a" in [u["username"] for u in listed]
    response = curator_client.post(
        "/api/users/", {"username": "x", "password": "a-long-enough-pass", "roles": ["admin"]}, format="json"
    )
    assert response.status_code == 403
    assert not get_user_model().objects.filter(username="x").exists()


def test_admins_create_users_with_roles(admin_client_api):
    response = admin_client_api.post(
        "/api/users/", {"username": "newcurator", "password": "a-long-enough-pass", "roles": ["curator"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["roles"] == ["annotator", "curator"]


def test_a_weak_password_is_refused_and_no_user_is_created(admin_client_api):
    response = admin_client_api.post(
        "/api/users/", {"username": "weak", "password": "1234567890", "roles": ["annotator"]}, format="json"
    )
    assert response.status_code == 400
    assert not get_user_model().objects.filter(username="weak").exists()


def test_health_is_public_and_reports_the_database(anonymous_client):
    response = anonymous_client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
