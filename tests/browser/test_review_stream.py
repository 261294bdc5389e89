"""Review and correction in Chromium: a curator walks a campaign's ratings with the keyboard (move, accept, reject,
correct) beside the consensus; an annotator edits their own rating from My work."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from playwright.sync_api import expect

from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, AnnotationReview
from aesplatform.catalog.models import ImageStatus
from model_core.standard import DIMENSION_KEYS
from tests import factories
from tests.support.browser import solid_jpeg

pytestmark = pytest.mark.browser


def scores(value: float) -> dict[str, float]:
    return {k: value for k in DIMENSION_KEYS}


def rated_campaign(users, values, *, images=2):
    """An expert campaign over stored images; users[i] rates every image values[i]; the consensus computed."""
    ids = []
    for k in range(images):
        image = factories.ImageFactory(status=ImageStatus.APPROVED)
        default_storage.save(image.file.name, ContentFile(solid_jpeg((60 * k, 90, 160))))
        ids.append(image.id)
    campaign = services.campaign_create(name="Portraits", mode="expert", created_by=factories.curator(),
                                        image_ids=ids, redundancy=len(users), annotators=list(users), state="active")
    ratings = []
    for user, value in zip(users, values):
        for _ in range(images):
            lease = services.task_lease_next(campaign=campaign, annotator=user)
            ratings.append(services.annotation_submit(assignment_id=lease.id, annotator=user, scores=scores(value),
                                                      idempotency_key=uuid.uuid4())[0])
    services.consensus_update_for_campaign(campaign=campaign)
    return campaign, ratings


def shown_rating(page) -> Annotation:
    return Annotation.objects.get(pk=int(page.get_by_test_id("review-stream").get_attribute("data-annotation")))


def test_a_curator_accepts_rejects_and_corrects_ratings_with_the_keyboard(page, login):
    users = [factories.annotator() for _ in range(3)]
    campaign, ratings = rated_campaign(users, (0.5, 0.55, 0.95))
    curator = factories.curator()
    login(page, curator)
    page.goto(f"/campaigns/{campaign.pk}/")
    page.get_by_test_id("review-ratings").click()
    expect(page).to_have_url(re.compile(rf"/campaigns/{campaign.pk}/review/$"))
    stream = page.get_by_test_id("review-stream")
    expect(stream).to_have_attribute("data-review-ready", "true")
    expect(page.get_by_test_id("review-position")).to_have_text("1 of 6")
    expect(page.get_by_test_id("review-dims").locator("tbody tr")).to_have_count(12)
    expect(page.get_by_test_id("review-image")).to_be_visible()

    # far from consensus first: the 0.95 ratings lead, their deviation highlighted
    page.get_by_test_id("review-filters").get_by_label("Order").select_option("deviation")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("review-annotator")).to_have_text(users[2].get_username())
    expect(page.get_by_test_id("dim-row-comprehensive")).to_have_class(re.compile("review-stream__far"))
    first = shown_rating(page)

    page.keyboard.press("j")
    expect(page.get_by_test_id("review-position")).to_have_text("2 of 6")
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_test_id("review-position")).to_have_text("1 of 6")
    assert shown_rating(page).pk == first.pk

    # a: accepted, on to the next one (the accepted one leaves the "not yet reviewed" queue)
    page.keyboard.press("a")
    expect(page.locator(".message--success")).to_contain_text(f"Rating #{first.pk} accepted")
    expect(page.get_by_test_id("review-position")).to_have_text("1 of 5")
    assert AnnotationReview.objects.get(annotation=first).state == "accepted"

    # r: reject, with the reason typed and Enter
    second = shown_rating(page)
    assert second.pk != first.pk
    page.keyboard.press("r")
    reason = page.get_by_test_id("reject-reason")
    expect(reason).to_be_focused()
    reason.fill("rated the background, not the person")
    reason.press("Enter")
    expect(page.locator(".message--success")).to_contain_text(f"Rating #{second.pk} rejected")
    review = AnnotationReview.objects.get(annotation=second)
    assert (review.state, review.reason, review.reviewed_by_id) == (
        "rejected", "rated the background, not the person", curator.pk)
    assert second.pk not in {a.pk for a in services.current_annotations(campaign=campaign)}

    # c: correct; Escape closes the form first, then c again, edit a score, say why, Enter
    third = shown_rating(page)
    page.keyboard.press("c")
    expect(page.get_by_test_id("correct-panel")).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("correct-panel")).not_to_have_attribute("open", "")
    page.keyboard.press("c")
    expect(page.get_by_test_id("correct-form").get_by_test_id("score-facial_brightness")).to_be_focused()
    page.get_by_test_id("correct-form").get_by_test_id("score-comprehensive").fill("0.62")
    page.get_by_test_id("correct-reason").fill("overall was a typo")
    page.get_by_test_id("correct-reason").press("Enter")
    expect(page.locator(".message--success")).to_contain_text(f"Rating #{third.pk} corrected")
    correction = Annotation.objects.get(supersedes=third)
    assert correction.comprehensive == pytest.approx(0.62) and correction.facial_brightness == pytest.approx(
        third.facial_brightness)
    assert (correction.corrected_by_id, correction.correction_reason) == (curator.pk, "overall was a typo")
    third.refresh_from_db()
    assert AnnotationReview.objects.get(annotation=third).state == "corrected"

    # every rating: the corrected one shows both versions and who corrected it
    page.goto(f"/campaigns/{campaign.pk}/review/?status=corrected")
    expect(page.get_by_test_id("review-position")).to_have_text("1 of 1")
    expect(page.get_by_test_id("review-history")).to_contain_text(f"corrected by {curator.get_username()}")


def test_an_annotator_edits_their_own_rating_from_my_work(page, login):
    annotator = factories.annotator()
    campaign, ratings = rated_campaign([annotator], (0.3,), images=1)
    mine = ratings[0]
    login(page, annotator)
    page.goto("/my-work/")
    page.get_by_test_id(f"edit-{mine.pk}").click()
    expect(page).to_have_url(re.compile(rf"/my-work/{mine.pk}/edit/$"))
    field = page.get_by_test_id("edit-form").get_by_test_id("score-comprehensive")
    expect(field).to_have_value("0.30")  # prefilled with the submitted values
    field.fill("0.45")
    page.get_by_test_id("edit-reason").fill("too harsh")
    page.get_by_test_id("edit-save").click()
    expect(page).to_have_url(re.compile(r"/my-work/$"))
    expect(page.locator(".message--success")).to_contain_text("was corrected")
    correction = Annotation.objects.get(supersedes=mine)
    assert (correction.comprehensive, correction.corrected_by_id, correction.correction_reason) == (
        pytest.approx(0.45), annotator.pk, "too harsh")
    expect(page.get_by_test_id(f"edit-{correction.pk}")).to_be_visible()
    expect(page.get_by_test_id(f"edit-{mine.pk}")).to_have_count(0)  # the old version is history now

    # a closed campaign: no edit, and the page says why
    services.campaign_update(campaign=campaign, data={"state": "closed"})
    page.goto(f"/my-work/{correction.pk}/edit/")
    expect(page.get_by_test_id("edit-blocked")).to_contain_text("The campaign is closed")
    expect(page.get_by_test_id("edit-save")).to_be_disabled()
