"""What schemathesis found (tests/integration/test_api_schemathesis.py), one behaviour each: responses match the
schema for every role, and malformed list parameters are a 400 instead of being ignored or truncated."""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from aesplatform.modeling.models import ModelVersion
from tests import factories
from tests.support.api_schema import openapi_document, wsgi_app

pytestmark = pytest.mark.django_db

SCHEMA = schemathesis.openapi.from_dict(openapi_document())


def _call_and_validate(label: str, user, **case_kwargs):
    """Call one operation as `user` (token auth) through the WSGI handler; fail if the response breaks the schema."""
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    case = SCHEMA.find_operation_by_label(label).Case(**case_kwargs)
    with wsgi_app() as app:
        response = case.call(app=app, headers={"Authorization": f"Token {token.key}"})
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                 content_type_conformance])
    return response


def test_campaigns_read_by_an_annotator_and_by_a_curator_both_match_the_schema():
    annotator, curator = factories.annotator(), factories.curator()
    campaign = factories.CampaignFactory(state="active", created_by=curator)
    campaign.annotators.add(annotator)
    for user in (annotator, curator):
        listed = _call_and_validate("GET /api/campaigns/", user)
        assert [c["id"] for c in listed.json()["results"]] == [campaign.pk]
        one = _call_and_validate("GET /api/campaigns/{id}/", user, path_parameters={"id": campaign.pk}).json()
        assert ("gold_ratio" in one) is (user == curator)  # annotators still do not see the staff-only fields


def test_a_model_version_nobody_promoted_matches_the_schema(tmp_path):
    curator = factories.curator()
    model = ModelVersion.objects.create(name="never-promoted", checkpoint_path=str(tmp_path))
    detail = _call_and_validate("GET /api/model-versions/{id}/", curator, path_parameters={"id": model.pk}).json()
    assert detail["promoted"] is False and detail["promoted_by"] is None
    _call_and_validate("GET /api/model-versions/", curator)


@pytest.mark.parametrize("url", ["/api/images/", "/api/exports/", "/api/training-jobs/", "/api/campaigns/"])
@pytest.mark.parametrize("page_size", ["null", "0", "-3", "1.5", ""])
def test_a_page_size_that_is_not_a_positive_integer_is_a_400(curator_client, url, page_size):
    response = curator_client.get(url, {"page_size": page_size})
    assert response.status_code == 400, response.content
    assert "page_size" in response.json()


def test_a_valid_page_size_still_pages_and_is_capped_at_the_maximum(curator_client):
    for _ in range(3):
        factories.ImageFactory()
    assert len(curator_client.get("/api/images/", {"page_size": 2}).json()["results"]) == 2
    assert len(curator_client.get("/api/images/", {"page_size": 100000}).json()["results"]) == 3


def test_listing_users_by_an_unknown_role_is_a_400(curator_client, annotator_user):
    response = curator_client.get("/api/users/", {"role": "AAA"})
    assert response.status_code == 400 and "role" in response.json()
    listed = curator_client.get("/api/users/", {"role": "annotator"}).json()["results"]
    assert annotator_user.username in [u["username"] for u in listed]


def test_a_fractional_integer_filter_is_a_400_not_a_truncated_match(curator_client):
    factories.ImageFactory(near_duplicate_group=0)
    assert len(curator_client.get("/api/images/", {"near_duplicate_group": 0}).json()["results"]) == 1
    response = curator_client.get("/api/images/", {"near_duplicate_group": "0.5"})
    assert response.status_code == 400 and "near_duplicate_group" in response.json()
    assert curator_client.get("/api/annotations/", {"campaign": "1.5"}).status_code == 400
