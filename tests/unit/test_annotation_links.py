"""The annotation pages are reachable by following links: annotator home / annotate list -> the rating page,
curator campaign list -> dashboard and the new-campaign form (no typed URLs)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse

from aesplatform.annotation import services
from aesplatform.catalog.models import ImageStatus
from model_core.standard import OVERALL
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def _campaign(*, annotators, name, curator=None):
    ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(3)]
    return services.campaign_create(
        name=name, mode="overall", created_by=curator or factories.curator(), image_ids=ids, redundancy=2,
        annotators=list(annotators), state="active",
    )


def _href(html: str, testid: str) -> str:
    match = re.search(rf'<a [^>]*href="([^"]+)"[^>]*data-testid="{re.escape(testid)}"', html)
    assert match, f"no link {testid!r} in the page"
    return match.group(1)


@pytest.mark.parametrize("start", ["ui:home", "ui:annotate"])
def test_annotator_follows_the_campaign_card_to_the_rating_page(client, start):
    ann = factories.annotator()
    campaign = _campaign(annotators=[ann], name="Portraits spring")
    client.force_login(ann)
    html = client.get(reverse(start)).content.decode()
    assert 'data-testid="rate-%d">Start rating<' % campaign.id in html
    href = _href(html, f"rate-{campaign.id}")
    assert href == reverse("ui:annotate_campaign", args=[campaign.id])
    page = client.get(href)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Portraits spring" in text and 'id="annotate-config"' in text

    # after a rating the card says "Continue rating", still to the same page
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    services.annotation_submit(
        assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.6}, idempotency_key=uuid.uuid4()
    )
    html = client.get(reverse(start)).content.decode()
    assert 'data-testid="rate-%d">Continue rating<' % campaign.id in html
    assert _href(html, f"rate-{campaign.id}") == href


def test_curator_follows_the_campaign_list_to_the_dashboard_and_the_new_campaign_form(client):
    curator = factories.curator()
    campaign = _campaign(annotators=[], name="Summer outfits", curator=curator)
    client.force_login(curator)
    html = client.get(reverse("ui:campaigns")).content.decode()

    href = _href(html, f"campaign-link-{campaign.id}")
    assert href == reverse("ui:campaign_detail", args=[campaign.id])
    dashboard = client.get(href)
    assert dashboard.status_code == 200 and 'data-testid="campaign-name"' in dashboard.content.decode()
    assert "Summer outfits" in dashboard.content.decode()

    new = _href(html, "campaign-new")
    assert new == reverse("ui:campaign_new")
    form = client.get(new)
    assert form.status_code == 200 and b"<form" in form.content


def test_empty_campaign_list_offers_to_create_one(client):
    client.force_login(factories.curator())
    html = client.get(reverse("ui:campaigns")).content.decode()
    assert "No campaign yet" in html
    assert f'href="{reverse("ui:campaign_new")}"' in html
