"""The rating page and the curator's campaign pages: role access, create form, dashboard, state, CSV export."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from django.test import Client
from django.utils.html import escape

from aesplatform.annotation import services
from aesplatform.annotation.models import Campaign, CampaignState
from aesplatform.catalog.models import ImageStatus
from model_core.standard import DIMENSION_KEYS, DIMENSIONS, GROUPS, OVERALL
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def browser_for(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def setup():
    annotator = factories.annotator()
    other = factories.annotator()
    ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(3)]
    campaign = services.campaign_create(
        name="Pages", mode="expert", created_by=factories.curator(), image_ids=ids, redundancy=2,
        annotators=[annotator, other], state="active", instructions="Look at the face.",
    )
    for user, value in ((annotator, 0.3), (other, 0.6)):
        lease = services.task_lease_next(campaign=campaign, annotator=user)
        services.annotation_submit(
            assignment_id=lease.id,
            annotator=user,
            scores={k: value for k in DIMENSION_KEYS},
            idempotency_key=uuid.uuid4(),
        )
    services.consensus_update_for_campaign(campaign=campaign)
    return campaign, annotator


def test_role_access_to_every_page(setup):
    campaign, annotator = setup
    curator = factories.curator()
    outsider = factories.annotator()
    pages = {
        f"/annotate/{campaign.id}/": "annotator",
        "/campaigns/new/": "curator",
        f"/campaigns/{campaign.id}/": "curator",
        f"/campaigns/{campaign.id}/annotations.csv": "curator",
    }
    for url, role in pages.items():
        anonymous = browser_for().get(url)
        assert anonymous.status_code == 302 and "/login/" in anonymous["Location"], url
        assert browser_for(factories.UserFactory()).get(url).status_code == 403, url
        assert browser_for(annotator).get(url).status_code == (200 if role == "annotator" else 403), url
        assert browser_for(curator).get(url).status_code in ((200,) if role == "curator" else (404,)), url
    assert browser_for(outsider).get(f"/annotate/{campaign.id}/").status_code == 404
    assert browser_for().post(f"/campaigns/{campaign.id}/state/", {"state": "closed"}).status_code == 302
    assert browser_for(annotator).post(f"/campaigns/{campaign.id}/state/", {"state": "closed"}).status_code == 403
    assert Campaign.objects.get().state == CampaignState.ACTIVE


def test_rating_page_ships_its_config_without_inline_script(setup):
    campaign, annotator = setup
    html = browser_for(annotator).get(f"/annotate/{campaign.id}/").content.decode()
    assert 'id="annotate-config" type="application/json"' in html
    assert "<script>" not in html and " style=" not in html
    assert html.count('class="dim"') == 12 and "Look at the face." in html
    assert "is_gold" not in html


def test_rating_page_groups_the_dimensions_with_their_definitions_and_presets_nothing(setup):
    campaign, annotator = setup
    response = browser_for(annotator).get(f"/annotate/{campaign.id}/")
    html = response.content.decode()
    positions = [html.index(f'data-testid="group-{g.key}"') for g in GROUPS]
    assert positions == sorted(positions)  # face, body, overall
    for d in DIMENSIONS:
        assert f'aria-describedby="dim-{d.key}-def"' in html and f">{escape(d.definition)}</p>" in html
    assert 'value="0.5"' not in html and 'aria-pressed="true"' not in html
    config = response.context["config"]
    assert [d["key"] for d in config["dimensions"]] == list(DIMENSION_KEYS)  # the keyboard walks the page's order
    assert config["urls"]["restore"] == "/api/assignments/0/restore/" and config["undoSeconds"] > 0


def test_overall_mode_shows_only_the_overall_dimension():
    annotator = factories.annotator()
    campaign = services.campaign_create(
        name="o", mode="overall", created_by=factories.curator(),
        image_ids=[factories.ImageFactory(status=ImageStatus.APPROVED).id], annotators=[annotator], state="active",
    )
    html = browser_for(annotator).get(f"/annotate/{campaign.id}/").content.decode()
    assert html.count('class="dim"') == 1 and f'data-dim="{OVERALL.key}"' in html


def test_dashboard_state_change_and_csv(setup):
    campaign, _ = setup
    curator = factories.curator()
    page = browser_for(curator).get(f"/campaigns/{campaign.id}/").content.decode()
    for marker in (
        'data-testid="agreement"',
        'data-testid="histograms"',
        'data-testid="annotator-table"',
        "<canvas data-chart=",
        'data-testid="throughput"',
    ):
        assert marker in page
    assert " style=" not in page

    response = browser_for(curator).get(f"/campaigns/{campaign.id}/annotations.csv")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["annotation_id", "campaign_id", "task_id"] and len(rows) == 3
    assert rows[1][rows[0].index("comprehensive")] in ("0.3", "0.6")

    r = browser_for(curator).post(f"/campaigns/{campaign.id}/state/", {"state": "closed"})
    assert r.status_code == 302 and Campaign.objects.get().state == CampaignState.CLOSED
    browser_for(curator).post(f"/campaigns/{campaign.id}/state/", {"state": "draft"})  # not allowed: stays closed
    assert Campaign.objects.get().state == CampaignState.CLOSED


def test_create_campaign_through_the_form():
    curator = factories.curator()
    annotator = factories.annotator()
    for _ in range(4):
        factories.ImageFactory(status=ImageStatus.APPROVED, source="set-a")
    factories.ImageFactory(status=ImageStatus.APPROVED, source="set-b")
    form = {
        "name": "From form", "mode": "overall", "redundancy": 2, "gold_ratio": 0, "image_source": "set-a",
        "image_limit": 3, "annotators": [annotator.id], "instructions": "", "task_order": "random",
        "lease_seconds": 600, "activate": "on",
    }
    r = browser_for(curator).post("/campaigns/new/", form)
    assert r.status_code == 302, r.content.decode()[:2000]
    campaign = Campaign.objects.get()
    assert campaign.tasks.count() == 3 and campaign.state == "active" and list(campaign.annotators.all()) == [annotator]
    # a gold ratio the images cannot satisfy is an error on the form, nothing stored
    bad = browser_for(curator).post("/campaigns/new/", {**form, "name": "bad", "gold_ratio": 0.5, "image_source": ""})
    assert bad.status_code == 200 and "reference label" in bad.content.decode()
    assert Campaign.objects.count() == 1
