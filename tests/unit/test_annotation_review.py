"""Review and correction of ratings: curators accept, correct (a new revision, the original kept) or reject (left
out of the consensus, reversible); annotators correct their own while the campaign is active; the review queue's
filters; the API of it."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from aesplatform.annotation import selectors, services, tasks
from aesplatform.annotation.models import (
    Annotation,
    AnnotationReview,
    AssignmentState,
    Consensus,
    ConsensusOrigin,
    ReviewState,
)
from aesplatform.common.exceptions import ConflictError, ServiceError
from model_core.standard import DIMENSION_KEYS, OVERALL
from tests import factories
from tests.support.annotation import campaign_for

pytestmark = pytest.mark.django_db


def scores(value: float) -> dict[str, float]:
    return {k: value for k in DIMENSION_KEYS}


def rate(campaign, user, value: float) -> Annotation:
    assignment = services.task_lease_next(campaign=campaign, annotator=user)
    annotation, _ = services.annotation_submit(assignment_id=assignment.id, annotator=user, scores=scores(value),
                                               idempotency_key=uuid.uuid4())
    return annotation


@pytest.fixture
def rated():
    """One image rated 0.5, 0.55 and 0.95 by three annotators (expert mode), its consensus computed."""
    users = [factories.annotator() for _ in range(3)]
    campaign = campaign_for(users, images=1, redundancy=3, mode="expert")
    ratings = [rate(campaign, u, v) for u, v in zip(users, (0.5, 0.55, 0.95))]
    services.consensus_update_for_campaign(campaign=campaign)
    return campaign, users, ratings


def overall_consensus(campaign) -> Consensus:
    return Consensus.objects.get(campaign=campaign, origin=ConsensusOrigin.CAMPAIGN, dimension=OVERALL.index)


def test_a_curator_correction_is_a_new_revision_with_who_and_why_and_the_original_stays(rated):
    campaign, users, ratings = rated
    curator = factories.curator()
    key = uuid.uuid4()
    correction, review, created = services.annotation_review_correct(
        annotation_id=ratings[2].pk, reviewer=curator, scores=scores(0.6), reason="misread the scale",
        idempotency_key=key,
    )
    assert created and correction.supersedes_id == ratings[2].pk
    assert (correction.annotator_id, correction.corrected_by_id) == (users[2].pk, curator.pk)
    assert correction.correction_reason == "misread the scale" and correction.created_at is not None
    ratings[2].refresh_from_db()
    assert ratings[2].comprehensive == pytest.approx(0.95)  # the original is kept as it was
    assert (review.annotation_id, review.version_id, review.state) == (ratings[2].pk, correction.pk, "corrected")

    # a retry of the same request stores nothing more
    again, review_again, created_again = services.annotation_review_correct(
        annotation_id=ratings[2].pk, reviewer=curator, scores=scores(0.6), reason="misread the scale",
        idempotency_key=key,
    )
    assert (again.pk, review_again.pk, created_again) == (correction.pk, review.pk, False)
    assert Annotation.objects.filter(task__campaign=campaign).count() == 4
    assert AnnotationReview.objects.count() == 1
    current = {a.annotator_id: a.comprehensive for a in services.current_annotations(campaign=campaign)}
    assert current[users[2].pk] == pytest.approx(0.6)


def test_a_curator_correction_needs_a_reason_and_the_curator_role(rated):
    campaign, users, ratings = rated
    with pytest.raises(ServiceError) as no_reason:
        services.annotation_review_correct(annotation_id=ratings[0].pk, reviewer=factories.curator(),
                                           scores=scores(0.6), reason="  ", idempotency_key=uuid.uuid4())
    assert no_reason.value.code == "reason_required"
    with pytest.raises(ServiceError) as not_curator:
        services.annotation_review_correct(annotation_id=ratings[0].pk, reviewer=users[1], scores=scores(0.6),
                                           reason="x", idempotency_key=uuid.uuid4())
    assert not_curator.value.status_code == 403
    assert Annotation.objects.filter(task__campaign=campaign).count() == 3 and not AnnotationReview.objects.exists()


def test_rejecting_a_rating_leaves_it_out_of_the_consensus_which_is_recomputed_and_accepting_brings_it_back(
    rated, django_capture_on_commit_callbacks
):
    campaign, users, ratings = rated
    curator = factories.curator()
    before = overall_consensus(campaign)
    assert before.count == 3
    with pytest.raises(ServiceError) as no_reason:
        services.annotation_review(annotation_id=ratings[2].pk, reviewer=curator, state="rejected", reason="")
    assert no_reason.value.code == "reason_required" and not AnnotationReview.objects.exists()

    windows = services.QUALITY_UPDATE_WINDOWS
    with django_capture_on_commit_callbacks(execute=True) as queued:
        review, changed = services.annotation_review(annotation_id=ratings[2].pk, reviewer=curator,
                                                     state="rejected", reason="rated the background")
    assert changed and review.state == ReviewState.REJECTED and review.reason == "rated the background"
    # the recomputation was queued on commit (the campaign's update window is open), and the task recomputes
    assert len(queued) == 1 and windows.open(campaign.pk) is None
    assert tasks.campaign_quality_update(campaign.pk, None)
    after = overall_consensus(campaign)
    assert after.count == 2 and after.score == pytest.approx(0.525)
    assert users[2].pk not in {a.annotator_id for a in services.current_annotations(campaign=campaign)}

    # reversible: accepting it again counts it again
    services.annotation_review(annotation_id=ratings[2].pk, reviewer=curator, state="accepted")
    services.consensus_update_for_campaign(campaign=campaign)
    assert overall_consensus(campaign).count == 3


def test_a_second_identical_review_changes_nothing(rated):
    _, _, ratings = rated
    curator, other = factories.curator(), factories.curator()
    first, changed = services.annotation_review(annotation_id=ratings[0].pk, reviewer=curator, state="accepted")
    again, changed_again = services.annotation_review(annotation_id=ratings[0].pk, reviewer=other, state="accepted")
    assert changed and not changed_again and again.pk == first.pk
    assert again.reviewed_by_id == curator.pk and AnnotationReview.objects.count() == 1


def test_reviewing_a_superseded_version_is_a_conflict(rated):
    campaign, users, ratings = rated
    services.annotation_correct(annotation_id=ratings[0].pk, annotator=users[0], scores=scores(0.45),
                                idempotency_key=uuid.uuid4())
    with pytest.raises(ConflictError) as conflict:
        services.annotation_review(annotation_id=ratings[0].pk, reviewer=factories.curator(), state="accepted")
    assert conflict.value.code == "already_superseded" and not AnnotationReview.objects.exists()


def test_one_review_per_rating_and_only_known_states_in_the_database(rated):
    _, _, ratings = rated
    curator = factories.curator()
    review, _ = services.annotation_review(annotation_id=ratings[0].pk, reviewer=curator, state="accepted")
    with pytest.raises(IntegrityError), transaction.atomic():
        AnnotationReview.objects.create(annotation=ratings[0], version=ratings[0], state="accepted",
                                        reviewed_by=curator, reviewed_at=review.reviewed_at)
    with pytest.raises(IntegrityError), transaction.atomic():
        AnnotationReview.objects.filter(pk=review.pk).update(state="maybe")
    with pytest.raises(IntegrityError), transaction.atomic():
        AnnotationReview.objects.filter(pk=review.pk).update(state="rejected", reason="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.filter(pk=ratings[1].pk).update(corrected_by=curator)  # an original has no corrector


def test_an_annotator_corrects_their_own_rating_only_and_only_while_the_campaign_is_active(rated):
    campaign, users, ratings = rated
    with pytest.raises(services.NotFound):
        services.annotation_correct(annotation_id=ratings[1].pk, annotator=users[0], scores=scores(0.1),
                                    idempotency_key=uuid.uuid4())
    mine, created = services.annotation_correct(annotation_id=ratings[0].pk, annotator=users[0],
                                                scores=scores(0.45), idempotency_key=uuid.uuid4(), reason="typo")
    assert created and mine.corrected_by_id == users[0].pk and mine.correction_reason == "typo"

    services.campaign_update(campaign=campaign, data={"state": "closed"})
    with pytest.raises(ConflictError) as closed:
        services.annotation_correct(annotation_id=mine.pk, annotator=users[0], scores=scores(0.3),
                                    idempotency_key=uuid.uuid4())
    assert closed.value.code == "campaign_not_active"
    # a curator still reviews and corrects a closed campaign
    services.annotation_review_correct(annotation_id=mine.pk, reviewer=factories.curator(), scores=scores(0.5),
                                       reason="checked", idempotency_key=uuid.uuid4())
    assert Annotation.objects.filter(task__campaign=campaign).count() == 5


def test_the_review_queue_filters_and_orders_by_deviation_from_the_consensus(rated):
    campaign, users, ratings = rated
    queue = selectors.review_queue(campaign=campaign, order="deviation")
    assert [e.annotation_id for e in queue] == [ratings[2].pk, ratings[0].pk, ratings[1].pk]
    assert queue[0].deviation == pytest.approx(0.95 - overall_consensus(campaign).score)

    curator = factories.curator()
    services.annotation_review(annotation_id=ratings[2].pk, reviewer=curator, state="rejected", reason="off")
    assert [e.annotation_id for e in selectors.review_queue(campaign=campaign)] == [ratings[0].pk, ratings[1].pk]
    rejected = selectors.review_queue(campaign=campaign, status="rejected")
    assert [(e.annotation_id, e.status) for e in rejected] == [(ratings[2].pk, "rejected")]
    assert [e.annotation_id for e in selectors.review_queue(campaign=campaign, status="all",
                                                            annotator_id=users[1].pk)] == [ratings[1].pk]
    assert selectors.review_queue(campaign=campaign, status="all", flagged=True) == []
    assert selectors.review_queue(campaign=campaign, status="all", gold_failed=True) == []

    # an annotator's correction after the review makes the rating unreviewed again
    services.annotation_review(annotation_id=ratings[0].pk, reviewer=curator, state="accepted")
    fixed, _ = services.annotation_correct(annotation_id=ratings[0].pk, annotator=users[0], scores=scores(0.52),
                                           idempotency_key=uuid.uuid4())
    unreviewed = [e.annotation_id for e in selectors.review_queue(campaign=campaign)]
    assert unreviewed == [ratings[1].pk, fixed.pk]


def test_the_queue_finds_gold_images_rated_at_the_wrong_level_and_flagged_images():
    users = [factories.annotator() for _ in range(2)]
    campaign = campaign_for(users, images=2, redundancy=3, mode="expert")
    gold_task, other_task = campaign.tasks.order_by("id")
    gold_task.is_gold = True
    gold_task.save()
    Consensus.objects.create(image_id=gold_task.image_id, dimension=OVERALL.index, origin=ConsensusOrigin.IMPORTED,
                             score=0.9, method="imported")
    ratings = {}
    for user, value in zip(users, (0.85, 0.3)):
        for _ in range(2):
            a = rate(campaign, user, value)
            ratings[(user.pk, a.task_id)] = a
    gold_failures = selectors.review_queue(campaign=campaign, gold_failed=True)
    assert [e.annotation_id for e in gold_failures] == [ratings[(users[1].pk, gold_task.pk)].pk]

    flagger = factories.annotator()
    services.campaign_update(campaign=campaign, data={"annotators": [*users, flagger]})
    lease = services.task_lease_next(campaign=campaign, annotator=flagger)
    assert services.assignment_flag(assignment_id=lease.id, annotator=flagger).state == AssignmentState.FLAGGED
    flagged = selectors.review_queue(campaign=campaign, flagged=True)
    assert {e.task_id for e in flagged} == {lease.task_id} and len(flagged) == 2


# --- the API --------------------------------------------------------------------------------------------------


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_review_api_accepts_rejects_and_corrects(rated):
    campaign, users, ratings = rated
    curator = client_for(factories.curator())
    url = f"/api/annotations/{ratings[2].pk}/review/"
    assert client_for(users[2]).post(url, {"state": "accepted"}, format="json").status_code == 403
    bad = curator.post(url, {"state": "rejected"}, format="json")
    assert bad.status_code == 400 and not AnnotationReview.objects.exists()
    unknown = curator.post(url, {"state": "accepted", "colour": "red"}, format="json")
    assert unknown.status_code == 400 and "colour" in str(unknown.json())
    r = curator.post(url, {"state": "rejected", "reason": "off"}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "rejected" and r.json()["changed"] is True
    body = {"state": "corrected", "reason": "scale", "scores": scores(0.6), "idempotency_key": str(uuid.uuid4())}
    r = curator.post(url, body, format="json")
    assert r.status_code == 201 and r.json()["state"] == "corrected"
    correction = Annotation.objects.get(supersedes=ratings[2])
    assert r.json()["version"] == correction.pk
    assert curator.post(url, body, format="json").status_code == 200  # the same request again

    listed = curator.get(f"/api/campaigns/{campaign.pk}/review/?status=all&order=deviation")
    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert len(rows) == 3 and {row["status"] for row in rows} == {"unreviewed", "corrected"}
    assert client_for(users[0]).get(f"/api/campaigns/{campaign.pk}/review/").status_code == 403
    assert curator.get(f"/api/campaigns/{campaign.pk}/review/?status=nope").status_code == 400


def test_a_review_newer_than_the_last_recomputation_is_caught_up_when_a_worker_starts(rated):
    campaign, _, ratings = rated
    assert campaign.pk not in services.consensus_catch_up()  # computed after the last rating
    services.annotation_review(annotation_id=ratings[0].pk, reviewer=factories.curator(), state="rejected",
                               reason="off")
    assert campaign.pk in services.consensus_catch_up()
