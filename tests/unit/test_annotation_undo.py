"""Undo of a skip or a flag (services.assignment_restore, POST /api/assignments/<id>/restore/): only one's own
assignment, only while its task still has a place, idempotent, and a refusal changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from aesplatform.annotation import services
from aesplatform.annotation.models import Assignment, AssignmentState, Campaign, Task, TaskState
from aesplatform.catalog.models import ImageStatus
from aesplatform.common.exceptions import ConflictError
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def client_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def make_campaign(*, images=1, annotators=(), redundancy=1) -> Campaign:
    ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(images)]
    return services.campaign_create(
        name="c", mode="overall", created_by=factories.curator(), image_ids=ids, redundancy=redundancy,
        annotators=list(annotators), state="active",
    )


def restore(user, assignment_id):
    return client_for(user).post(f"/api/assignments/{assignment_id}/restore/", {}, format="json")


def snapshot():
    return (
        list(Assignment.objects.order_by("id").values_list("id", "state", "leased_until", "finished_at")),
        list(Task.objects.order_by("id").values_list("id", "state", "active_lease_count", "submitted_count")),
    )


@pytest.fixture
def ann(db):
    return factories.annotator()


@pytest.mark.parametrize("release", ["skip", "flag"])
def test_undo_brings_the_same_task_back_as_a_live_lease_of_the_same_annotator(ann, release):
    campaign = make_campaign(annotators=[ann])
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    getattr(services, f"assignment_{release}")(assignment_id=lease.id, annotator=ann)
    assert services.task_lease_next(campaign=campaign, annotator=ann) is None  # nothing left while it is given up

    response = restore(ann, lease.id)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == lease.id and body["state"] == "leased"
    lease.refresh_from_db()
    assert lease.state == AssignmentState.LEASED and lease.finished_at is None and lease.leased_until > timezone.now()
    assert Task.objects.get().active_lease_count == 1
    # a reload resumes it: the next-task call hands the restored lease back, and it can be submitted
    assert services.task_lease_next(campaign=campaign, annotator=ann).id == lease.id
    services.annotation_submit(assignment_id=lease.id, annotator=ann, scores={"comprehensive": 0.7},
                               idempotency_key="00000000-0000-4000-8000-000000000001")
    assert Task.objects.get().state == TaskState.DONE


def test_a_repeated_undo_changes_nothing_and_answers_the_same(ann):
    campaign = make_campaign(annotators=[ann])
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_skip(assignment_id=lease.id, annotator=ann)
    first = restore(ann, lease.id)
    before = snapshot()
    second = restore(ann, lease.id)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert snapshot() == before  # the lease count went up once


def test_another_annotators_assignment_and_an_unknown_id_are_404s_and_change_nothing(ann):
    other = factories.annotator()
    campaign = make_campaign(annotators=[ann, other], redundancy=2)
    theirs = services.task_lease_next(campaign=campaign, annotator=other)
    services.assignment_skip(assignment_id=theirs.id, annotator=other)
    before = snapshot()
    for assignment_id in (theirs.id, 987654321):
        response = restore(ann, assignment_id)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert response.json()["detail"] == "no such task lease"  # the same answer: others' ids are not confirmed
    with pytest.raises(services.NotFound):
        services.assignment_restore(assignment_id=theirs.id, annotator=ann)
    assert snapshot() == before


def test_a_task_whose_freed_place_was_taken_cannot_come_back(ann):
    other = factories.annotator()
    campaign = make_campaign(annotators=[ann, other], redundancy=1)
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_skip(assignment_id=lease.id, annotator=ann)
    assert services.task_lease_next(campaign=campaign, annotator=other) is not None  # the other took the place
    before = snapshot()
    response = restore(ann, lease.id)
    assert response.status_code == 409 and response.json()["code"] == "task_taken"
    assert "other annotators took this task" in response.json()["detail"]
    assert snapshot() == before


def test_a_flag_that_retired_the_image_cannot_be_undone(ann):
    second = factories.annotator()
    campaign = make_campaign(annotators=[ann, second], redundancy=2)
    mine = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_flag(assignment_id=mine.id, annotator=ann)
    theirs = services.task_lease_next(campaign=campaign, annotator=second)
    services.assignment_flag(assignment_id=theirs.id, annotator=second)  # two flags: the image is retired
    before = snapshot()
    response = restore(ann, mine.id)
    assert response.status_code == 409 and response.json()["code"] == "task_closed"
    assert snapshot() == before


def test_only_skipped_or_flagged_assignments_and_only_recent_ones_can_be_undone(ann):
    campaign = make_campaign(images=3, annotators=[ann], redundancy=1)
    submitted = services.task_lease_next(campaign=campaign, annotator=ann)
    services.annotation_submit(assignment_id=submitted.id, annotator=ann, scores={"comprehensive": 0.5},
                               idempotency_key="00000000-0000-4000-8000-000000000002")
    response = restore(ann, submitted.id)
    assert response.status_code == 409 and response.json()["code"] == "not_restorable"
    assert "this one is submitted" in response.json()["detail"]

    old = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_skip(assignment_id=old.id, annotator=ann)
    later = timezone.now() + services.RESTORE_WINDOW + timedelta(seconds=1)
    with pytest.raises(ConflictError, match="cannot be undone") as refused:
        services.assignment_restore(assignment_id=old.id, annotator=ann, now=later)
    assert refused.value.code == "undo_too_late"
    assert Assignment.objects.get(pk=old.id).state == AssignmentState.SKIPPED

    expired = services.task_lease_next(campaign=campaign, annotator=ann)
    with pytest.raises(ConflictError) as refused:
        services.assignment_restore(assignment_id=expired.id, annotator=ann, now=expired.leased_until)
    assert refused.value.code == "not_restorable" and "expired" in str(refused.value)


def test_an_undo_in_a_closed_campaign_or_after_leaving_it_is_refused(ann):
    campaign = make_campaign(annotators=[ann])
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_skip(assignment_id=lease.id, annotator=ann)
    campaign.annotators.remove(ann)
    assert restore(ann, lease.id).status_code == 404
    campaign.annotators.add(ann)
    Campaign.objects.filter(pk=campaign.pk).update(state="closed")
    response = restore(ann, lease.id)
    assert response.status_code == 409 and response.json()["code"] == "campaign_not_active"
    assert Assignment.objects.get(pk=lease.id).state == AssignmentState.SKIPPED


def test_undo_may_exceed_the_live_lease_cap_by_one_not_more(ann):
    campaign = make_campaign(images=4, annotators=[ann])
    first = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_skip(assignment_id=first.id, annotator=ann)
    second = services.task_lease_next(campaign=campaign, annotator=ann)
    services.assignment_skip(assignment_id=second.id, annotator=ann)
    shown = services.task_lease_next(campaign=campaign, annotator=ann)
    preloaded = services.task_lease_next(campaign=campaign, annotator=ann, held=[shown.id])
    assert preloaded.id != shown.id  # the page's two live leases
    assert restore(ann, second.id).status_code == 200  # the one on screen is given back: three live leases
    response = restore(ann, first.id)
    assert response.status_code == 409 and response.json()["code"] == "too_many_leases"
    assert Assignment.objects.get(pk=first.id).state == AssignmentState.SKIPPED
