"""Membership decides everything an annotator may learn or write; drafts in the browser belong to one user."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, Campaign
from aesplatform.catalog.models import ImageStatus
from model_core.standard import OVERALL
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def campaign_with(annotators, *, state="active") -> Campaign:
    images = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(2)]
    campaign = services.campaign_create(name="c", mode="overall", created_by=factories.curator(), image_ids=images,
                                        redundancy=1, annotators=list(annotators),
                                        state="draft" if state == "draft" else "active")
    if state == "closed":
        campaign = services.campaign_update(campaign=campaign, data={"state": "closed"})
    return campaign


def rate(client, campaign) -> dict:
    lease = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()
    response = client.post(f"/api/assignments/{lease['id']}/submit/",
                           {"scores": {OVERALL.key: 0.4}, "idempotency_key": str(uuid.uuid4())}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.parametrize("state", ["draft", "closed", "active"])
def test_a_non_member_gets_the_same_404_for_any_campaign_whatever_its_state(state):
    outsider = client_for(factories.annotator())
    campaign = campaign_with([factories.annotator()], state=state)
    response = outsider.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
    missing = outsider.post("/api/campaigns/999999/next-task/", {}, format="json")
    assert (response.status_code, response.json()) == (missing.status_code, missing.json()) == (404, missing.json())


def test_a_member_of_a_draft_campaign_is_told_it_is_not_active():
    member = factories.annotator()
    campaign = campaign_with([member], state="draft")
    response = client_for(member).post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "campaign_not_active"


def test_an_annotator_taken_off_a_campaign_cannot_correct_their_annotations():
    member = factories.annotator()
    campaign = campaign_with([member])
    client = client_for(member)
    annotation = rate(client, campaign)
    services.campaign_update(campaign=campaign, data={"annotators": []})
    response = client.post(f"/api/annotations/{annotation['id']}/correct/",
                           {"scores": {OVERALL.key: 0.9}, "idempotency_key": str(uuid.uuid4())}, format="json")
    assert response.status_code == 404
    assert Annotation.objects.count() == 1


def test_a_member_can_still_correct():
    member = factories.annotator()
    campaign = campaign_with([member])
    client = client_for(member)
    annotation = rate(client, campaign)
    response = client.post(f"/api/annotations/{annotation['id']}/correct/",
                           {"scores": {OVERALL.key: 0.9}, "idempotency_key": str(uuid.uuid4())}, format="json")
    assert response.status_code == 201 and Annotation.objects.count() == 2


def test_the_annotate_page_keys_drafts_by_user_and_logout_clears_site_storage():
    member = factories.annotator()
    campaign = campaign_with([member])
    browser = Client()
    browser.force_login(member)
    page = browser.get(f"/annotate/{campaign.id}/").content.decode()
    start = page.index('id="annotate-config"')
    config = json.loads(page[page.index(">", start) + 1:page.index("</script>", start)])
    assert config["userId"] == member.pk and config["campaignId"] == campaign.pk
    response = browser.post("/logout/")
    assert response.status_code in (200, 302) and response["Clear-Site-Data"] == '"storage"'
