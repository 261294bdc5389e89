"""The review stream page (curators) and My work's edit of one's own rating (annotators), through Django's client."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, AnnotationReview
from model_core.standard import DIMENSION_KEYS
from tests import factories
from tests.support.annotation import campaign_for

pytestmark = pytest.mark.django_db


def browser_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def scores(value: float) -> dict[str, float]:
    return {k: value for k in DIMENSION_KEYS}


def form_scores(value: float) -> dict[str, str]:
    return {f"score-{k}": str(value) for k in DIMENSION_KEYS}


@pytest.fixture
def rated():
    users = [factories.annotator() for _ in range(2)]
    campaign = campaign_for(users, images=1, redundancy=2, mode="expert")
    ratings = []
    for user, value in zip(users, (0.3, 0.9)):
        lease = services.task_lease_next(campaign=campaign, annotator=user)
        ratings.append(services.annotation_submit(assignment_id=lease.id, annotator=user, scores=scores(value),
                                                  idempotency_key=uuid.uuid4())[0])
    services.consensus_update_for_campaign(campaign=campaign)
    return campaign, users, ratings


def test_the_review_stream_shows_the_rating_beside_the_consensus_with_far_deviations_marked(rated):
    campaign, users, ratings = rated
    page = browser_for(factories.curator()).get(f"/campaigns/{campaign.pk}/review/?order=deviation")
    assert page.status_code == 200
    html = page.content.decode()
    assert page.context["queue_size"] == 2
    assert page.context["entry"].annotation_id in {r.pk for r in ratings}
    rows = page.context["rows"]
    assert [r["key"] for r in rows] == list(DIMENSION_KEYS)
    assert all(r["far"] for r in rows) and rows[0]["deviation"] == pytest.approx(0.3 if page.context[
        "entry"].annotation_id == ratings[1].pk else -0.3)
    assert "review-stream__far" in html and users[0].get_username() in html or users[1].get_username() in html
    assert browser_for(users[0]).get(f"/campaigns/{campaign.pk}/review/").status_code == 403


def test_accept_reject_and_correct_from_the_review_stream(rated):
    campaign, users, ratings = rated
    curator = factories.curator()
    client = browser_for(curator)
    url = f"/campaigns/{campaign.pk}/review/"
    r = client.post(url, {"action": "accept", "annotation": ratings[0].pk, "next": ratings[1].pk})
    assert r.status_code == 302 and r["Location"].endswith(f"?at={ratings[1].pk}")
    assert AnnotationReview.objects.get(annotation=ratings[0]).state == "accepted"

    r = client.post(url, {"action": "reject", "annotation": ratings[1].pk, "reason": ""})
    assert r.status_code == 302 and AnnotationReview.objects.filter(annotation=ratings[1]).count() == 0
    client.post(url, {"action": "reject", "annotation": ratings[1].pk, "reason": "rated the wrong person"})
    assert AnnotationReview.objects.get(annotation=ratings[1]).state == "rejected"

    body = {"action": "correct", "annotation": ratings[1].pk, "reason": "fixed", "idempotency_key": str(uuid.uuid4()),
            **form_scores(0.5)}
    assert client.post(url, body).status_code == 302
    assert client.post(url, body).status_code == 302  # a double submit stores one correction
    correction = Annotation.objects.get(supersedes=ratings[1])
    assert (correction.corrected_by_id, correction.correction_reason, correction.comprehensive) == (
        curator.pk, "fixed", pytest.approx(0.5))
    assert AnnotationReview.objects.get(annotation=ratings[1]).state == "corrected"

    everything = client.get(f"{url}?status=all&at={correction.pk}")
    assert everything.context["entry"].annotation_id == correction.pk
    assert len(everything.context["history"]) == 2


def test_an_annotator_edits_their_own_rating_from_my_work(rated):
    campaign, users, ratings = rated
    mine, theirs = ratings
    client = browser_for(users[0])
    listing = client.get("/my-work/").content.decode()
    assert f"/my-work/{mine.pk}/edit/" in listing
    page = client.get(f"/my-work/{mine.pk}/edit/")
    assert page.status_code == 200 and not page.context["blocked"]
    assert 'value="0.30"' in page.content.decode()  # prefilled with the rating's values
    assert client.get(f"/my-work/{theirs.pk}/edit/").status_code == 404
    assert client.post(f"/my-work/{theirs.pk}/edit/", form_scores(0.1)).status_code == 404

    body = {"idempotency_key": str(uuid.uuid4()), "reason": "too harsh", **form_scores(0.4)}
    r = client.post(f"/my-work/{mine.pk}/edit/", body)
    assert r.status_code == 302 and r["Location"] == "/my-work/"
    client.post(f"/my-work/{mine.pk}/edit/", body)  # the same form again: nothing more stored
    correction = Annotation.objects.get(supersedes=mine)
    assert (correction.corrected_by_id, correction.correction_reason) == (users[0].pk, "too harsh")
    assert Annotation.objects.filter(annotator=users[0]).count() == 2
    assert client.get(f"/my-work/{mine.pk}/edit/").context["blocked"].startswith("This version was corrected")


def test_editing_a_rating_of_a_closed_campaign_is_refused_and_says_why(rated):
    campaign, users, ratings = rated
    services.campaign_update(campaign=campaign, data={"state": "closed"})
    client = browser_for(users[0])
    page = client.get(f"/my-work/{ratings[0].pk}/edit/")
    assert "campaign is closed" in page.context["blocked"]
    r = client.post(f"/my-work/{ratings[0].pk}/edit/", {"idempotency_key": str(uuid.uuid4()), **form_scores(0.4)})
    assert r.status_code == 302 and not Annotation.objects.filter(supersedes=ratings[0]).exists()
    assert "campaign closed" in client.get("/my-work/").content.decode()
