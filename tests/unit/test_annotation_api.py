"""Campaigns, leases, submits through the API: rules, every bad input (a clear 4xx, nothing stored), role access."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from aesplatform.annotation import services
from aesplatform.annotation.models import (
    Annotation,
    Assignment,
    AssignmentState,
    Campaign,
    Consensus,
    ConsensusOrigin,
    Task,
    TaskState,
)
from aesplatform.catalog.models import Image, ImageStatus
from model_core.standard import DIMENSION_KEYS, OVERALL
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def client_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def make_campaign(*, images=3, annotators=(), mode="expert", redundancy=2, state="active", **kw) -> Campaign:
    ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(images)]
    return services.campaign_create(
        name="c", mode=mode, created_by=factories.curator(), image_ids=ids, redundancy=redundancy,
        annotators=list(annotators), state=state, **kw,
    )


def expert_scores(value=0.5):
    return {k: value for k in DIMENSION_KEYS}


def submit(client, assignment_id, scores, key=None, **extra):
    body = {"scores": scores, "idempotency_key": str(key or uuid.uuid4()), "time_spent_ms": 1200, **extra}
    return client.post(f"/api/assignments/{assignment_id}/submit/", body, format="json")


def next_task(client, campaign, held=()):
    return client.post(f"/api/campaigns/{campaign.id}/next-task/", {"held": list(held)}, format="json")


@pytest.fixture
def ann(db):
    return factories.annotator()


@pytest.fixture
def ann2(db):
    return factories.annotator()


# --- campaigns -----------------------------------------------------------------------------------------------------


def test_curator_creates_a_campaign_with_tasks_and_unannounced_gold(curator_client, ann):
    images = [factories.ImageFactory(status=ImageStatus.APPROVED) for _ in range(10)]
    for image in images[:4]:
        Consensus.objects.create(
            image=image, dimension=OVERALL.index, origin=ConsensusOrigin.IMPORTED, score=0.7, method="imported"
        )
    r = curator_client.post(
        "/api/campaigns/",
        {"name": "first", "mode": "overall", "image_ids": [i.id for i in images], "redundancy": 2, "gold_ratio": 0.2,
         "annotators": [ann.id], "state": "active", "instructions": "Rate the person."},
        format="json",
    )
    assert r.status_code == 201, r.content
    campaign = Campaign.objects.get(pk=r.json()["id"])
    assert campaign.tasks.count() == 10 and campaign.tasks.filter(is_gold=True).count() == 2
    assert set(campaign.tasks.filter(is_gold=True).values_list("image_id", flat=True)) <= {i.id for i in images[:4]}
    assert Image.objects.filter(status=ImageStatus.IN_CAMPAIGN).count() == 10
    assert r.json()["dimensions"] == [OVERALL.key]
    # the annotator's view of the task never says gold
    task = next_task(client_for(ann), campaign).json()
    assert "is_gold" not in task and "gold" not in str(task)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_ids": []}, "image_ids"),
        ({"mode": "both"}, "mode"),
        ({"redundancy": 0}, "redundancy"),
        ({"gold_ratio": 0.9}, "gold_ratio"),
        ({"gold_ratio": 0.5}, "reference label"),
        ({"image_ids": [999999]}, "unknown images"),
        ({"unapproved": True}, "approved"),
        ({"annotators": [999999]}, "unknown annotator"),
        ({"curator_as_annotator": False, "plain_user": True}, "annotator role"),
        ({"state": "closed"}, "draft or active"),
        ({"priority": 1, "lease": 60}, "unknown fields: lease, priority"),
    ],
)
def test_campaign_create_bad_input(curator_client, change, message):
    good = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(2)]
    body = {"name": "x", "mode": "expert", "image_ids": good, "redundancy": 2}
    change = dict(change)
    if change.pop("unapproved", False):
        body["image_ids"] = good + [factories.ImageFactory(status=ImageStatus.IMPORTED).id]
    if change.pop("plain_user", False):
        body["annotators"] = [factories.UserFactory().id]
    change.pop("curator_as_annotator", None)
    body.update(change)
    r = curator_client.post("/api/campaigns/", body, format="json")
    assert r.status_code == 400, r.content
    assert message in r.content.decode()
    assert Campaign.objects.count() == 0 and Task.objects.count() == 0
    assert not Image.objects.filter(status=ImageStatus.IN_CAMPAIGN).exists()


def test_campaign_state_changes_and_closing_ends_leases(curator_client, ann):
    campaign = make_campaign(annotators=[ann], state="draft")
    assert next_task(client_for(ann), campaign).status_code == 409  # a draft hands out nothing
    assert curator_client.patch(f"/api/campaigns/{campaign.id}/", {"state": "active"}, format="json").status_code == 200
    task = next_task(client_for(ann), campaign).json()
    r = curator_client.patch(
        f"/api/campaigns/{campaign.id}/", {"state": "closed", "instructions": "new"}, format="json"
    )
    assert r.status_code == 200 and r.json()["instructions"] == "new"
    assert Assignment.objects.get(pk=task["id"]).state == AssignmentState.EXPIRED
    assert Task.objects.filter(active_lease_count__gt=0).count() == 0
    assert curator_client.patch(f"/api/campaigns/{campaign.id}/", {"state": "draft"}, format="json").status_code == 409
    # a setting that cannot change is refused by name, not answered 200 with nothing changed
    refused = curator_client.patch(
        f"/api/campaigns/{campaign.id}/", {"redundancy": 5, "name": "renamed"}, format="json"
    )
    assert refused.status_code == 400 and "unknown fields: redundancy" in refused.json()["non_field_errors"][0]
    assert Campaign.objects.filter(pk=campaign.id, redundancy=2, name="c").exists()


# --- leases -------------------------------------------------------------------------------------------------------


def test_next_task_leases_preloads_resumes_and_caps_live_leases(ann):
    campaign = make_campaign(images=4, annotators=[ann])
    c = client_for(ann)
    first = next_task(c, campaign).json()
    assert first["image_url"] == f"/api/assignments/{first['id']}/image/"
    assert len(first["dimensions"]) == 12 and first["prescore"] is None
    second = next_task(c, campaign, held=[first["id"]]).json()
    assert second["task_id"] != first["task_id"]
    # a reload (nothing held) resumes the oldest live lease; a third lease is refused
    assert next_task(c, campaign).json()["id"] == first["id"]
    r = next_task(c, campaign, held=[first["id"], second["id"]])
    assert r.status_code == 409 and r.json()["code"] == "too_many_leases"
    assert Task.objects.get(pk=first["task_id"]).active_lease_count == 1


def test_exactly_redundancy_distinct_annotators_and_never_the_same_image_twice(ann, ann2):
    third = factories.annotator()
    campaign = make_campaign(images=1, annotators=[ann, ann2, third], redundancy=2)
    a1 = next_task(client_for(ann), campaign).json()
    a2 = next_task(client_for(ann2), campaign).json()
    assert a1["task_id"] == a2["task_id"]
    assert next_task(client_for(third), campaign).status_code == 204  # two live leases fill the redundancy
    assert submit(client_for(ann), a1["id"], expert_scores()).status_code == 201
    # the annotator who rated it is never offered it again
    assert next_task(client_for(ann), campaign, held=[]).status_code == 204
    assert submit(client_for(ann2), a2["id"], expert_scores(0.7)).status_code == 201
    task = Task.objects.get()
    assert (task.state, task.submitted_count, task.active_lease_count) == (TaskState.DONE, 2, 0)
    assert next_task(client_for(third), campaign).status_code == 204


def test_an_expired_lease_returns_the_task_and_cannot_be_submitted(ann, ann2):
    campaign = make_campaign(images=1, annotators=[ann, ann2], redundancy=1)
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    assert services.task_lease_next(campaign=campaign, annotator=ann2) is None
    later = timezone.now() + timedelta(seconds=campaign.lease_seconds + 1)
    other = services.task_lease_next(campaign=campaign, annotator=ann2, now=later)
    assert other is not None and other.task_id == lease.task_id
    lease.refresh_from_db()
    assert lease.state == AssignmentState.EXPIRED
    r = submit(client_for(ann), lease.id, expert_scores())
    assert r.status_code == 409 and r.json()["code"] == "lease_expired"
    assert Annotation.objects.count() == 0
    assert Task.objects.get().active_lease_count == 1


def test_a_lease_past_its_time_is_refused_even_before_anyone_expires_it(ann):
    campaign = make_campaign(images=1, annotators=[ann])
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    Assignment.objects.filter(pk=lease.pk).update(
        leased_at=timezone.now() - timedelta(hours=2), leased_until=timezone.now() - timedelta(hours=1)
    )
    r = submit(client_for(ann), lease.id, expert_scores())
    assert r.status_code == 409 and r.json()["code"] == "lease_expired"
    assert Annotation.objects.count() == 0


def test_skip_and_flag(ann, ann2):
    campaign = make_campaign(images=1, annotators=[ann, ann2, factories.annotator()], redundancy=3)
    a = next_task(client_for(ann), campaign).json()
    assert client_for(ann).post(f"/api/assignments/{a['id']}/skip/").json()["state"] == "skipped"
    assert next_task(client_for(ann), campaign).status_code == 204  # not offered again
    assert client_for(ann).post(f"/api/assignments/{a['id']}/skip/").status_code == 409
    b = next_task(client_for(ann2), campaign).json()
    r = client_for(ann2).post(f"/api/assignments/{b['id']}/flag/", {"reason": "black image"}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "flagged"
    task = Task.objects.get()
    assert task.state == TaskState.OPEN and task.active_lease_count == 0
    third = Campaign.objects.get().annotators.exclude(pk__in=[ann.pk, ann2.pk]).get()
    c = next_task(client_for(third), campaign).json()
    client_for(third).post(f"/api/assignments/{c['id']}/flag/", {}, format="json")
    task.refresh_from_db()
    assert task.state == TaskState.DONE and task.image.status == ImageStatus.BROKEN


# --- submit -------------------------------------------------------------------------------------------------------


def test_submit_once_and_idempotent_replay(ann):
    campaign = make_campaign(annotators=[ann])
    c = client_for(ann)
    a = next_task(c, campaign).json()
    key = uuid.uuid4()
    first = submit(c, a["id"], expert_scores(0.61), key=key)
    assert first.status_code == 201
    again = submit(c, a["id"], expert_scores(0.61), key=key)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    different = submit(c, a["id"], expert_scores(0.2), key=key)
    assert different.status_code == 409 and different.json()["code"] == "idempotency_conflict"
    new_key = submit(c, a["id"], expert_scores(0.61))
    assert new_key.status_code == 409 and new_key.json()["code"] == "already_submitted"
    assert Annotation.objects.count() == 1
    stored = Annotation.objects.get()
    assert stored.is_expert and stored.time_spent_ms == 1200 and stored.facial_brightness == pytest.approx(0.61)


OVERALL_ONLY = {OVERALL.key: 0.5}


@pytest.mark.parametrize(
    "mode, scores, code",
    [
        ("expert", {**expert_scores(), "outfit": 1.5}, "score_out_of_range"),
        ("expert", {**expert_scores(), "outfit": -0.01}, "score_out_of_range"),
        ("expert", {**expert_scores(), "outfit": "high"}, "score_out_of_range"),
        ("expert", {**expert_scores(), "outfit": None}, "missing_dimension"),
        ("expert", {k: 0.5 for k in DIMENSION_KEYS[:-1]}, "missing_dimension"),
        ("expert", {**expert_scores(), "sparkle": 0.5}, "unknown_dimension"),
        ("overall", {OVERALL.key: 0.5, "facial_brightness": 0.5}, "wrong_mode_dimensions"),
        ("overall", {}, "missing_dimension"),
        ("overall", {OVERALL.key: True}, "score_out_of_range"),
        ("overall", {OVERALL.key: float("nan")}, "score_out_of_range"),
    ],
)
def test_submit_bad_scores(ann, mode, scores, code):
    campaign = make_campaign(annotators=[ann], mode=mode)
    c = client_for(ann)
    a = next_task(c, campaign).json()
    if scores.get(OVERALL.key) != scores.get(OVERALL.key):  # NaN cannot travel as JSON: call the service
        with pytest.raises(services.ServiceError) as exc:
            services.annotation_submit(
                assignment_id=a["id"], annotator=ann, scores=scores, idempotency_key=uuid.uuid4()
            )
        assert exc.value.code == code
    else:
        r = submit(c, a["id"], scores)
        assert r.status_code == 400, r.content
        assert r.json()["code"] == code
    assert Annotation.objects.count() == 0
    assert Assignment.objects.get(pk=a["id"]).state == AssignmentState.LEASED


def test_submit_other_bad_requests(ann, ann2, curator_user):
    campaign = make_campaign(annotators=[ann, ann2])
    a = next_task(client_for(ann), campaign).json()
    # leased to another annotator: answered as an id that does not exist (ids of others' leases are not confirmed)
    r = submit(client_for(ann2), a["id"], expert_scores())
    missing = submit(client_for(ann), 999999, expert_scores())
    assert r.status_code == missing.status_code == 404 and r.json() == missing.json()
    # not a UUID, negative time
    assert submit(client_for(ann), a["id"], expert_scores(), key="not-a-uuid").status_code == 400
    assert submit(client_for(ann), a["id"], expert_scores(), time_spent_ms=-5).status_code == 400
    assert (
        client_for(ann).post(f"/api/assignments/{a['id']}/submit/", {"scores": [0.5]}, format="json").status_code == 400
    )
    # a closed campaign
    services.campaign_update(campaign=campaign, data={"state": "closed"})
    Assignment.objects.filter(pk=a["id"]).update(state=AssignmentState.LEASED)  # even a lease that still looks live
    r = submit(client_for(ann), a["id"], expert_scores())
    assert r.status_code == 409 and r.json()["code"] == "campaign_not_active"
    assert Annotation.objects.count() == 0


def test_annotators_read_only_their_own_annotations_and_corrections_supersede(ann, ann2, curator_client):
    campaign = make_campaign(annotators=[ann, ann2])
    a = next_task(client_for(ann), campaign).json()
    mine = submit(client_for(ann), a["id"], expert_scores(0.4)).json()
    assert client_for(ann2).get(f"/api/annotations/{mine['id']}/").status_code == 404
    assert client_for(ann2).get(f"/api/annotations/?annotator={ann.id}").status_code == 403
    assert client_for(ann2).get("/api/annotations/").json()["count"] == 0
    assert client_for(ann).get(f"/api/annotations/?annotator={ann.id}").json()["count"] == 1
    assert curator_client.get(f"/api/annotations/?campaign={campaign.id}").json()["count"] == 1

    key = str(uuid.uuid4())
    body = {"scores": expert_scores(0.8), "idempotency_key": key}
    assert client_for(ann2).post(f"/api/annotations/{mine['id']}/correct/", body, format="json").status_code == 404
    r = client_for(ann).post(f"/api/annotations/{mine['id']}/correct/", body, format="json")
    assert r.status_code == 201 and r.json()["supersedes"] == mine["id"]
    assert client_for(ann).post(f"/api/annotations/{mine['id']}/correct/", body, format="json").status_code == 200
    other = {"scores": expert_scores(0.9), "idempotency_key": str(uuid.uuid4())}
    assert client_for(ann).post(f"/api/annotations/{mine['id']}/correct/", other, format="json").status_code == 409
    original = Annotation.objects.get(pk=mine["id"])
    assert original.facial_brightness == pytest.approx(0.4)  # the history stays
    current = services.current_annotations(campaign=campaign)
    assert [x.facial_brightness for x in current] == [pytest.approx(0.8)]


def test_assignment_image_is_served_to_its_annotator_only(ann, ann2, settings, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    campaign = make_campaign(images=1, annotators=[ann, ann2])
    image = Task.objects.get().image
    default_storage.save(image.file.name, ContentFile(b"\xff\xd8\xff fake jpeg"))
    a = next_task(client_for(ann), campaign).json()
    r = client_for(ann).get(a["image_url"])
    assert r.status_code == 200 and b"".join(r.streaming_content).startswith(b"\xff\xd8")
    # another annotator's lease is not confirmed to exist (404, as for annotations and campaigns)
    assert client_for(ann2).get(a["image_url"]).status_code == 404


def test_prescores_shown_only_when_the_campaign_says_so(ann):
    from aesplatform.modeling.models import ModelVersion, Prescore

    campaign = make_campaign(images=1, annotators=[ann], show_prescores=True)
    model = ModelVersion.objects.create(**_model_version_fields())
    Prescore.objects.create(
        image=Task.objects.get().image, model_version=model, lm_score=0.5, regression_score=0.5, metavoter_score=0.66
    )
    assert next_task(client_for(ann), campaign).json()["prescore"]["metavoter_score"] == pytest.approx(0.66)


def _model_version_fields():
    from aesplatform.modeling.models import ModelVersion

    fields = {}
    for f in ModelVersion._meta.concrete_fields:
        if (
            f.primary_key
            or f.has_default()
            or f.null
            or getattr(f, "auto_now_add", False)
            or getattr(f, "auto_now", False)
        ):
            continue
        if f.get_internal_type() in ("CharField", "TextField"):
            fields[f.name] = "m"
        elif f.get_internal_type() == "JSONField":
            fields[f.name] = {}
        elif f.is_relation:
            fields[f.name] = factories.curator()
    return fields


# --- consensus through the services, stats and consensus endpoints ------------------------------------------------


def test_consensus_and_stats_after_submits(curator_client):
    annotators = [factories.annotator() for _ in range(3)]
    campaign = make_campaign(images=2, annotators=annotators, redundancy=3, mode="overall")
    values = {annotators[0].id: 0.2, annotators[1].id: 0.4, annotators[2].id: 0.9}
    for user in annotators:
        for _ in range(2):
            lease = services.task_lease_next(campaign=campaign, annotator=user)
            services.annotation_submit(
                assignment_id=lease.id,
                annotator=user,
                scores={OVERALL.key: values[user.id]},
                idempotency_key=uuid.uuid4(),
            )
    services.consensus_update_for_campaign(campaign=campaign)
    rows = Consensus.objects.filter(campaign=campaign)
    assert rows.count() == 2
    for row in rows:
        assert row.score == pytest.approx(0.5) and row.count == 3 and row.ci_low < 0.5 < row.ci_high
    stats = curator_client.get(f"/api/campaigns/{campaign.id}/stats/").json()
    assert stats["progress"]["submitted"] == 6 and stats["progress"]["done"] == 2
    assert stats["dimensions"][0]["key"] == OVERALL.key and sum(stats["dimensions"][0]["histogram"]) == 6
    assert len(stats["annotators"]) == 3
    consensus = curator_client.get(f"/api/campaigns/{campaign.id}/consensus/").json()
    assert consensus["count"] == 2


def test_quality_update_runs_only_when_stale(ann):
    campaign = make_campaign(images=1, annotators=[ann], redundancy=1, mode="overall")
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    services.annotation_submit(
        assignment_id=lease.id, annotator=ann, scores={OVERALL.key: 0.3}, idempotency_key=uuid.uuid4()
    )
    before = timezone.now()
    assert services.consensus_update_if_stale(campaign_id=campaign.id, requested_at=before) is True
    assert services.consensus_update_if_stale(campaign_id=campaign.id, requested_at=before) is False
    assert Consensus.objects.get(campaign=campaign).score == pytest.approx(0.3)


# --- role access for every endpoint ---------------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/api/campaigns/"),
    ("post", "/api/campaigns/"),
    ("get", "/api/campaigns/{c}/"),
    ("patch", "/api/campaigns/{c}/"),
    ("post", "/api/campaigns/{c}/next-task/"),
    ("get", "/api/campaigns/{c}/stats/"),
    ("get", "/api/campaigns/{c}/consensus/"),
    ("post", "/api/assignments/{a}/submit/"),
    ("post", "/api/assignments/{a}/skip/"),
    ("post", "/api/assignments/{a}/flag/"),
    ("post", "/api/assignments/{a}/restore/"),
    ("get", "/api/assignments/{a}/image/"),
    ("get", "/api/annotations/"),
    ("get", "/api/annotations/{n}/"),
    ("post", "/api/annotations/{n}/correct/"),
]
CURATOR_ONLY = {
    ("post", "/api/campaigns/"),
    ("patch", "/api/campaigns/{c}/"),
    ("get", "/api/campaigns/{c}/stats/"),
    ("get", "/api/campaigns/{c}/consensus/"),
}


def test_role_access_for_every_endpoint(ann):
    campaign = make_campaign(images=2, annotators=[ann])
    lease = services.task_lease_next(campaign=campaign, annotator=ann)
    done = services.task_lease_next(campaign=campaign, annotator=ann, held=[lease.id])
    annotation, _ = services.annotation_submit(
        assignment_id=done.id, annotator=ann, scores=expert_scores(), idempotency_key=uuid.uuid4()
    )
    ids = {"c": campaign.id, "a": lease.id, "n": annotation.id}
    plain = factories.UserFactory()  # signed in, no role
    for method, template in ENDPOINTS:
        url = template.format(**ids)
        assert getattr(APIClient(), method)(url, {}, format="json").status_code in (401, 403), (method, url)
        assert getattr(client_for(plain), method)(url, {}, format="json").status_code == 403, (method, url)
        if (method, template) in CURATOR_ONLY:
            assert getattr(client_for(ann), method)(url, {}, format="json").status_code == 403, (method, url)
    # curators may read everything an annotator may not
    curator = factories.curator()
    for method, template in [
        ("get", "/api/campaigns/{c}/stats/"),
        ("get", "/api/campaigns/{c}/consensus/"),
        ("get", "/api/annotations/{n}/"),
        ("get", "/api/campaigns/{c}/"),
    ]:
        assert getattr(client_for(curator), method)(template.format(**ids)).status_code == 200
    # an annotator not in the campaign gets no task and cannot see it
    outsider = factories.annotator()
    assert next_task(client_for(outsider), campaign).status_code == 404  # as for a campaign that does not exist
    assert client_for(outsider).get(f"/api/campaigns/{campaign.id}/").status_code == 404
    assert client_for(ann).get(f"/api/campaigns/{campaign.id}/").json()["name"] == "c"
    assert "gold_ratio" not in client_for(ann).get(f"/api/campaigns/{campaign.id}/").json()
