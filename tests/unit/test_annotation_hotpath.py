"""The annotation hot path (next task + submit) stays lean: SQL statements per request are counted, so a change
that adds a lookup per request fails here; and the shortcuts keep every rule (roles, membership, replay)."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from aesplatform.accounts.roles import Role
from aesplatform.accounts.services import user_set_roles
from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, Assignment, AssignmentState, Task, TaskState
from model_core.standard import DIMENSION_KEYS, OVERALL
from tests import factories
from tests.support.annotation import campaign_for

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

# Inside the test's transaction every service transaction is a SAVEPOINT + RELEASE (2 statements); in production
# they are BEGIN + COMMIT instead.
NEXT_TASK_MAX_QUERIES = 8  # token+roles, campaign+membership+own live leases, expire, task, counter, insert (+2)
SUBMIT_MAX_QUERIES = 7  # token+roles, lock the lease, task counters, insert, lease state (+2)


def token_client(user) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    return APIClient(HTTP_AUTHORIZATION=f"Token {token.key}")


def submit_body(value=0.5, key=None):
    return {"scores": {OVERALL.key: value}, "idempotency_key": str(key or uuid.uuid4()), "time_spent_ms": 900}


def test_next_task_and_submit_sql_per_request(django_assert_max_num_queries):
    ann = factories.annotator()
    campaign = campaign_for([ann])
    client = token_client(ann)
    for _ in range(2):  # the first and a later cycle cost the same
        with django_assert_max_num_queries(NEXT_TASK_MAX_QUERIES):
            r = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
        assert r.status_code == 200, r.content
        lease = r.json()
        task = Task.objects.select_related("image").get(pk=lease["task_id"])
        assert (
            lease["campaign_id"] == campaign.id and lease["mode"] == "overall" and lease["dimensions"] == [OVERALL.key]
        )
        assert (lease["image_width"], lease["image_height"]) == (task.image.width, task.image.height)
        assert lease["image_url"] == f"/api/assignments/{lease['id']}/image/" and lease["prescore"] is None
        with django_assert_max_num_queries(SUBMIT_MAX_QUERIES):
            r = client.post(f"/api/assignments/{lease['id']}/submit/", submit_body(), format="json")
        assert r.status_code == 201, r.content
        body = r.json()
        assert body["task"] == task.id and body["image_id"] == task.image_id and body["campaign_id"] == campaign.id
        assert body["scores"] == {OVERALL.key: 0.5} and body["annotator"] == ann.id


def test_resumed_lease_has_the_same_response():
    ann = factories.annotator()
    campaign = campaign_for([ann])
    client = token_client(ann)
    first = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()
    again = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()  # a reload
    assert again == first


def test_submit_counters_and_done_state_through_the_single_update():
    a, b = factories.annotator(), factories.annotator()
    campaign = campaign_for([a, b], images=1, redundancy=2)
    la = services.task_lease_next(campaign=campaign, annotator=a)
    lb = services.task_lease_next(campaign=campaign, annotator=b)
    task = Task.objects.get(pk=la.task_id)
    assert (task.active_lease_count, task.submitted_count, task.state) == (2, 0, TaskState.OPEN)
    services.annotation_submit(
        assignment_id=la.id, annotator=a, scores={OVERALL.key: 0.2}, idempotency_key=uuid.uuid4()
    )
    task.refresh_from_db()
    assert (task.active_lease_count, task.submitted_count, task.state) == (1, 1, TaskState.OPEN)
    services.annotation_submit(
        assignment_id=lb.id, annotator=b, scores={OVERALL.key: 0.4}, idempotency_key=uuid.uuid4()
    )
    task.refresh_from_db()
    assert (task.active_lease_count, task.submitted_count, task.state) == (0, 2, TaskState.DONE)


def test_token_roles_are_read_per_request_and_membership_still_checked():
    ann, outsider = factories.annotator(), factories.annotator()
    campaign = campaign_for([ann])
    client = token_client(ann)
    assert client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").status_code == 200
    # an annotator who is not in the campaign: 404, nothing leased
    r = token_client(outsider).post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert not Assignment.objects.filter(annotator=outsider).exists()
    # a missing campaign: the same answer
    missing = client.post("/api/campaigns/999999/next-task/", {}, format="json")
    assert missing.status_code == 404 and missing.json() == r.json()
    # the role is taken away: the very next request with the same token is refused
    user_set_roles(user=ann, roles=[])
    assert client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").status_code == 403
    # curators (and admins) hold the annotator role through IMPLIED_ROLES
    user_set_roles(user=ann, roles=[Role.CURATOR])
    r = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
    assert r.status_code == 200, r.content
    # an inactive user's token is refused; a wrong token too (403 rather than 401: session auth comes first, as in
    # the project's default authentication classes)
    leases = Assignment.objects.count()
    ann.is_active = False
    ann.save(update_fields=["is_active"])
    r = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
    assert r.status_code in (401, 403) and "inactive" in r.json()["detail"].lower()
    bad = APIClient(HTTP_AUTHORIZATION="Token " + "0" * 40)
    r = bad.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json")
    assert r.status_code in (401, 403) and "invalid token" in r.json()["detail"].lower()
    assert Assignment.objects.count() == leases


def test_replay_and_key_reuse_without_the_pre_insert_lookup():
    ann = factories.annotator()
    campaign = campaign_for([ann], images=3)
    client = token_client(ann)
    first = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()
    key = uuid.uuid4()
    r1 = client.post(f"/api/assignments/{first['id']}/submit/", submit_body(0.3, key), format="json")
    r2 = client.post(f"/api/assignments/{first['id']}/submit/", submit_body(0.3, key), format="json")
    assert (r1.status_code, r2.status_code) == (201, 200) and r1.json() == r2.json()
    # the same key on another lease: a 409, nothing stored, the other lease stays live
    second = client.post(f"/api/campaigns/{campaign.id}/next-task/", {}, format="json").json()
    r3 = client.post(f"/api/assignments/{second['id']}/submit/", submit_body(0.3, key), format="json")
    assert r3.status_code == 409 and r3.json()["code"] == "idempotency_conflict"
    assert Annotation.objects.count() == 1
    assert Assignment.objects.get(pk=second["id"]).state == AssignmentState.LEASED
    assert Task.objects.get(pk=second["task_id"]).submitted_count == 0
    # an out-of-range score is still refused by the field validators before anything is written
    r4 = client.post(f"/api/assignments/{second['id']}/submit/", submit_body(1.5), format="json")
    assert r4.status_code == 400 and Annotation.objects.count() == 1


def test_quality_updates_are_queued_once_per_window_and_stamped_with_its_end(
    monkeypatch, django_capture_on_commit_callbacks
):
    sent = []

    def publish(name, *args, countdown):
        assert name == services.QUALITY_UPDATE_TASK
        sent.append((args, countdown))

    monkeypatch.setattr(services, "task_send", publish)
    clock = [1000.0]
    monkeypatch.setattr(services, "QUALITY_UPDATE_WINDOWS", services.QualityUpdateWindows(clock=lambda: clock[0]))
    ann = factories.annotator()
    campaign = campaign_for([ann], images=4, redundancy=1)
    before = timezone.now()
    for _ in range(3):
        lease = services.task_lease_next(campaign=campaign, annotator=ann)
        with django_capture_on_commit_callbacks(execute=True):
            services.annotation_submit(
                assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.5}, idempotency_key=uuid.uuid4()
            )
    assert len(sent) == 1
    (campaign_id, requested_at), countdown = sent[0]
    assert campaign_id == campaign.id
    # stamped with the end of the window, and run after it: it reads every submit the window left unqueued
    stamp = timezone.datetime.fromisoformat(requested_at)
    assert stamp >= before + timezone.timedelta(seconds=services.QUALITY_UPDATE_WINDOW_S)
    assert countdown > services.QUALITY_UPDATE_WINDOW_S
    # once the window is over, the next submit queues again
    clock[0] += services.QUALITY_UPDATE_WINDOW_S
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    with django_capture_on_commit_callbacks(execute=True):
        services.annotation_submit(
            assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.5}, idempotency_key=uuid.uuid4()
        )
    assert len(sent) == 2


def test_a_failed_publish_keeps_the_submit_and_owes_the_update_to_the_next_publish(
    monkeypatch, django_capture_on_commit_callbacks
):
    """The job queue down: submits succeed; the campaign's update is sent with the next publish that works."""
    calls, down = [], [True]

    def publish(name, *args, countdown):
        calls.append(args[0])
        if down[0]:
            raise ConnectionError("broker down")

    monkeypatch.setattr(services, "task_send", publish)
    monkeypatch.setattr(services, "QUALITY_UPDATE_WINDOWS", services.QualityUpdateWindows())
    ann = factories.annotator()
    first, second = campaign_for([ann], images=2, redundancy=1), campaign_for([ann], images=1, redundancy=1)
    for _ in range(2):
        lease = services.task_lease_next(campaign=first, annotator=ann)
        with django_capture_on_commit_callbacks(execute=True):
            _, created = services.annotation_submit(assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.5},
                                                    idempotency_key=uuid.uuid4())
        assert created
    assert calls == [first.id]  # the second submit did not wait on the broker again (retry delay)
    assert services.QUALITY_UPDATE_WINDOWS.owed == {first.id}
    down[0] = False
    lease = services.task_lease_next(campaign=second, annotator=ann)
    with django_capture_on_commit_callbacks(execute=True):
        services.annotation_submit(assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.5},
                                   idempotency_key=uuid.uuid4())
    assert calls == [first.id, second.id, first.id] and not services.QUALITY_UPDATE_WINDOWS.owed


def test_hot_path_sql_reads_the_same_rows_as_the_orm():
    """hotpath.py writes the ORM's statements by hand: what they return must equal what the ORM reads."""
    from aesplatform.annotation import hotpath
    from aesplatform.annotation.models import Campaign
    from aesplatform.annotation.serializers import AnnotationSerializer

    a, b = factories.annotator(), factories.annotator()
    campaign = campaign_for([a], images=2, redundancy=2, mode="expert")
    user, groups = hotpath.token_user_and_groups(Token.objects.create(user=a).key)
    assert user == a and groups == ["annotator"] and user.username == a.username and user.is_active
    assert user.date_joined == a.date_joined  # converted like the ORM's (aware datetimes)
    assert hotpath.token_user_and_groups("nope") is None

    found, member = hotpath.campaign_with_membership(campaign_id=campaign.id, user_id=a.id)
    orm = Campaign.objects.get(pk=campaign.id)
    assert member is True and [getattr(found, f.attname) for f in Campaign._meta.concrete_fields] == [
        getattr(orm, f.attname) for f in Campaign._meta.concrete_fields
    ]
    assert hotpath.campaign_with_membership(campaign_id=campaign.id, user_id=b.id)[1] is False

    lease = services.task_lease_next(campaign=campaign, annotator=a)
    locked = hotpath.assignment_locked(assignment_id=lease.id)
    stored = Assignment.objects.select_related("task__campaign").get(pk=lease.id)
    for f in Assignment._meta.concrete_fields:
        assert getattr(locked, f.attname) == getattr(stored, f.attname), f.name
        assert getattr(lease, f.attname) == getattr(stored, f.attname), f.name  # what the lease statement returned
    assert (locked.task.pk, locked.task.campaign_id, locked.task.image_id) == (
        stored.task.pk,
        campaign.id,
        stored.task.image_id,
    )
    c = locked.task.campaign
    assert (c.pk, c.mode, c.state, c.redundancy, c.lease_seconds) == (
        campaign.id,
        "expert",
        "active",
        2,
        campaign.lease_seconds,
    )
    assert hotpath.live_lease_ids(campaign_id=campaign.id, annotator_id=a.id, now=timezone.now()) == [lease.id]
    read, member, expired, live = hotpath.campaign_for_next_task(
        campaign_id=campaign.id, user_id=a.id, now=timezone.now()
    )
    assert read == campaign and read.mode == "expert" and member is True and expired is False and live == [lease.id]
    assert hotpath.campaign_for_next_task(campaign_id=campaign.id, user_id=b.id, now=timezone.now())[1:] == (
        False,
        False,
        [],
    )
    assert hotpath.campaign_for_next_task(campaign_id=999999, user_id=a.id, now=timezone.now()) is None
    later = timezone.now() + timezone.timedelta(seconds=campaign.lease_seconds + 1)
    assert hotpath.campaign_for_next_task(campaign_id=campaign.id, user_id=b.id, now=later)[1:] == (False, True, [])
    assert hotpath.live_lease_ids(campaign_id=campaign.id, annotator_id=a.id, now=later) == []
    assert hotpath.expired_leases_locked(now=later, limit=10) == [(lease.id, lease.task_id)]
    assert hotpath.expired_leases_locked(now=timezone.now(), limit=10) == []

    annotation, _ = services.annotation_submit(
        assignment_id=lease.id, annotator=a, scores={k: 0.25 for k in DIMENSION_KEYS},
        idempotency_key=uuid.uuid4(), ui_version="t/1",
    )
    fresh = Annotation.objects.select_related("task").get(pk=annotation.pk)
    assert hotpath.annotation_payload(annotation) == AnnotationSerializer(fresh).data


def test_a_lease_that_ended_after_the_campaign_read_is_not_resumed():
    """task_lease_next trusts the live leases read with the campaign only for "nothing to resume, below the cap"."""
    from aesplatform.annotation import selectors

    ann = factories.annotator()
    campaign = campaign_for([ann], images=3)
    first = services.task_lease_next(campaign=campaign, annotator=ann)
    read = selectors.campaign_for_lease(campaign_id=campaign.id, user=ann)
    assert (read.annotator_id, read.live_lease_ids) == (ann.id, (first.id,))
    # the lease ends in between (its time is up when the service runs)
    later = timezone.now() + timezone.timedelta(seconds=campaign.lease_seconds + 1)
    nxt = services.task_lease_next(campaign=read.campaign, annotator=ann, now=later, read=read)
    assert nxt.id != first.id and Assignment.objects.get(pk=first.id).state == AssignmentState.EXPIRED


def test_the_one_statement_lease_counts_the_lease_on_the_task_it_returns():
    ann = factories.annotator()
    campaign = campaign_for([ann], images=1, redundancy=2)
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    task = lease.task
    task.refresh_from_db()
    assert task.active_lease_count == 1 and Assignment.objects.get(pk=lease.id).task_id == task.id
    assert lease.task.image.width and lease.task.campaign == campaign


@pytest.mark.parametrize(
    ("mode", "scores", "code"),
    [
        (
            "expert",
            {OVERALL.key: 0.5},
            "missing_dimension",
        ),  # taken for an overall rating: the statement's mode differs
        ("overall", {k: 0.5 for k in DIMENSION_KEYS}, "wrong_mode_dimensions"),  # taken for an expert rating
    ],
)
def test_a_submit_for_the_other_mode_writes_nothing_and_gets_the_error_of_the_campaigns_mode(mode, scores, code):
    """The one-statement submit takes the mode from the scores and makes it a condition of the statement; when the
    campaign's mode is another, nothing is written and the locking path explains the error for the real mode."""
    from aesplatform.common.exceptions import ServiceError

    ann = factories.annotator()
    campaign = campaign_for([ann], images=1, mode=mode)
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    with pytest.raises(ServiceError) as refused:
        services.annotation_submit(assignment_id=lease.id, annotator=ann, scores=scores, idempotency_key=uuid.uuid4())
    assert refused.value.code == code
    assert not Annotation.objects.exists()
    assert Assignment.objects.get(pk=lease.id).state == AssignmentState.LEASED
    task = Task.objects.get(pk=lease.task_id)
    assert (task.submitted_count, task.active_lease_count) == (0, 1)


def test_a_submit_to_a_lease_that_ran_out_writes_nothing():
    from aesplatform.common.exceptions import ConflictError

    ann = factories.annotator()
    campaign = campaign_for([ann], images=1)
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    later = timezone.now() + timezone.timedelta(seconds=campaign.lease_seconds + 1)
    with pytest.raises(ConflictError) as refused:
        services.annotation_submit(assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.5},
                                   idempotency_key=uuid.uuid4(), now=later)
    assert refused.value.code == "lease_expired"
    assert not Annotation.objects.exists() and Task.objects.get(pk=lease.task_id).submitted_count == 0


def test_the_expiry_sweep_is_skipped_only_on_a_fresh_no(monkeypatch):
    from aesplatform.annotation import selectors

    ann = factories.annotator()
    campaign = campaign_for([ann], images=2)
    sweeps = []
    real = services.leases_expire
    monkeypatch.setattr(services, "leases_expire", lambda **kw: sweeps.append(kw) or real(**kw))
    read = selectors.campaign_for_lease(campaign_id=campaign.id, user=ann)
    assert read.any_expired is False
    services.task_lease_next(campaign=read.campaign, annotator=ann, read=read)
    assert sweeps == []  # nothing had run out a moment ago
    read = selectors.campaign_for_lease(campaign_id=campaign.id, user=ann)
    services.task_lease_next(campaign=read.campaign, annotator=ann, held=[], read=read,
                             now=timezone.now() + timezone.timedelta(hours=1))
    assert len(sweeps) == 1  # asked about another time than the read's: swept


def test_an_annotator_taken_off_a_campaign_loses_the_leases_they_held():
    from aesplatform.common.exceptions import ConflictError

    kept, removed = factories.annotator(), factories.annotator()
    campaign = campaign_for([kept, removed], images=2, redundancy=1)
    lease = services.task_lease_next(campaign=campaign, annotator=removed)
    other = services.task_lease_next(campaign=campaign, annotator=kept)
    services.campaign_update(campaign=campaign, data={"annotators": [kept]})
    assert Assignment.objects.get(pk=lease.id).state == AssignmentState.EXPIRED
    assert Assignment.objects.get(pk=other.id).state == AssignmentState.LEASED  # the others keep theirs
    with pytest.raises(ConflictError):
        services.annotation_submit(assignment_id=lease.id, annotator=removed, scores={OVERALL.key: 0.5},
                                   idempotency_key=uuid.uuid4())
    assert Task.objects.get(pk=lease.task_id).active_lease_count == 0  # the task is free for the others
    again = services.task_lease_next(campaign=campaign, annotator=kept, held=[other.id])
    assert again.task_id == lease.task_id


def test_a_lease_context_read_for_someone_else_is_refused_and_leases_nothing():
    """The context selectors.campaign_for_lease read is for one annotator and campaign: passing it with another
    is a programming error, never a membership or a lease list taken from someone else."""
    from aesplatform.annotation import selectors

    member, other = factories.annotator(), factories.annotator()
    campaign = campaign_for([member, other], images=2)
    read = selectors.campaign_for_lease(campaign_id=campaign.id, user=member)
    assert (read.campaign, read.annotator_id, read.member, read.live_lease_ids) == (campaign, member.id, True, ())
    with pytest.raises(ValueError, match="another campaign or annotator"):
        services.task_lease_next(campaign=read.campaign, annotator=other, read=read)
    assert not Assignment.objects.exists()
    outsider = factories.annotator()
    assert selectors.campaign_for_lease(campaign_id=campaign.id, user=outsider).member is False
