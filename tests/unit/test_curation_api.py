"""The curation API: curators only, clean 4xx for bad input, the whole review flow."""

from __future__ import annotations

import pytest

from aesplatform.catalog.models import ImageStatus
from aesplatform.curation import services
from aesplatform.curation.models import CuratorDecision, FilterRun, ReviewBatch
from tests import factories
from tests.support.curation import PIXEL_ONLY, run_in_process
from tests.support.scenes import TINY_MODEL, stored_scenes

pytestmark = pytest.mark.django_db


def _scored_run(user, count=3, start=0):
    images = stored_scenes(count, start=start)
    run = services.filter_run_create(created_by=user, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY,
                                     clip_model_name=TINY_MODEL, clip_checkpoint="", enqueue=False)
    return run_in_process(run), images


def test_every_curation_endpoint_refuses_annotators_and_anonymous(annotator_client, anonymous_client, curator_user):
    run = services.filter_run_create(created_by=curator_user, image_ids=[factories.ImageFactory().pk],
                                     clip_model_name=TINY_MODEL, clip_checkpoint="", enqueue=False)
    batch = ReviewBatch.objects.create(run=run, number=1)
    calls = [
        ("get", "/api/filter-runs/"), ("post", "/api/filter-runs/"), ("get", "/api/filter-runs/defaults/"),
        ("get", f"/api/filter-runs/{run.pk}/"), ("patch", f"/api/filter-runs/{run.pk}/thresholds/"),
        ("post", f"/api/filter-runs/{run.pk}/resume/"), ("post", f"/api/filter-runs/{run.pk}/cancel/"),
        ("get", f"/api/filter-runs/{run.pk}/results/"), ("get", f"/api/filter-runs/{run.pk}/batches/"),
        ("get", f"/api/review-batches/{batch.pk}/"), ("post", f"/api/review-batches/{batch.pk}/decide/"),
    ]
    for method, url in calls:
        response = getattr(annotator_client, method)(url, {}, format="json")
        assert response.status_code == 403, (method, url, response.status_code)
        assert getattr(anonymous_client, method)(url, {}, format="json").status_code in (401, 403), (method, url)
    assert ReviewBatch.objects.get(pk=batch.pk).state == "pending" and not CuratorDecision.objects.exists()
    assert FilterRun.objects.get(pk=run.pk).state == "pending"


def test_create_through_the_api_queues_the_gpu_task(curator_client, django_capture_on_commit_callbacks, monkeypatch):
    images = [factories.ImageFactory() for _ in range(3)]
    queued = []
    monkeypatch.setattr("aesplatform.common.jobqueue.task_send", lambda name, run_id: queued.append((name, run_id)))
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post("/api/filter-runs/", {
            "name": "first pass", "image_ids": [i.pk for i in images], "clip_model_name": TINY_MODEL,
            "clip_checkpoint": "", "thresholds": {"min_blur_variance": 12},
        }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["total"] == 3 and body["state"] == "pending" and body["thresholds"]["min_blur_variance"] == 12
    assert body["counts"]["scored"] == 0 and queued == [("aesplatform.curation.tasks.filter_run_execute", body["id"])]
    defaults = curator_client.get("/api/filter-runs/defaults/").json()
    # no checkpoint configured: the small model (random weights are noise in any model; this one is fast)
    assert (defaults["clip_model_name"], defaults["clip_checkpoint"]) == (TINY_MODEL, "")
    assert "person_subject" in defaults["prompt_set"]["groups"]


@pytest.mark.parametrize("payload, status, text", [
    ({"source": "nothing-here"}, 400, "holds no image"),
    ({"clip_checkpoint": "/no/such/file.pt"}, 400, "does not exist"),
    ({"clip_model_name": "ViT-Unknown"}, 400, "Unknown CLIP model"),
    ({"thresholds": {"min_faces": -1}}, 400, "min_faces"),
    ({"prompt_set": {"version": "1", "groups": {}}}, 400, "at least one group"),
    ({"image_ids": [999999]}, 400, "Unknown image id"),
    ({"batch_size": 0}, 400, "batch_size"),
])
def test_bad_create_requests_are_4xx_and_record_nothing(curator_client, payload, status, text):
    factories.ImageFactory()
    response = curator_client.post("/api/filter-runs/", {"clip_model_name": TINY_MODEL, **payload}, format="json")
    assert response.status_code == status and text in str(response.json()), response.json()
    assert not FilterRun.objects.exists()


def test_review_flow_through_the_api(curator_client, curator_user):
    run, images = _scored_run(curator_user)
    detail = curator_client.get(f"/api/filter-runs/{run.pk}/").json()
    assert detail["state"] == "succeeded" and detail["progress"] == 1.0 and detail["counts"]["proposed_keep"] == 3
    results = curator_client.get(f"/api/filter-runs/{run.pk}/results/").json()
    assert results["count"] == 3 and results["results"][0]["thumbnail_url"].endswith("/thumbnail/")
    batches = curator_client.get(f"/api/filter-runs/{run.pk}/batches/").json()["results"]
    assert len(batches) == 1 and batches[0]["size"] == 3 and batches[0]["state"] == "pending"
    batch = curator_client.get(f"/api/review-batches/{batches[0]['id']}/").json()
    uncertainties = [r["uncertainty"] for r in batch["results"]]
    assert uncertainties == sorted(uncertainties, reverse=True)

    response = curator_client.patch(
        f"/api/filter-runs/{run.pk}/thresholds/", {"thresholds": {"max_aspect_ratio": 0.5}}, format="json"
    )
    assert response.status_code == 400 and "max_aspect_ratio" in response.json()["detail"]
    response = curator_client.patch(
        f"/api/filter-runs/{run.pk}/thresholds/", {"thresholds": {"min_short_side": 5000}}, format="json"
    )
    assert response.status_code == 200 and response.json()["counts"]["proposed_reject"] == 3
    assert curator_client.get(f"/api/review-batches/{batches[0]['id']}/").status_code == 200  # refilled in place
    batch_id = curator_client.get(f"/api/filter-runs/{run.pk}/batches/").json()["results"][0]["id"]

    other_run, other_images = _scored_run(curator_user, count=1, start=40)
    response = curator_client.post(f"/api/review-batches/{batch_id}/decide/",
                                   {"decisions": [{"image": other_images[0].pk, "decision": "approve"}]}, format="json")
    assert response.status_code == 400 and "is not in review batch" in response.json()["detail"]
    response = curator_client.post(f"/api/review-batches/{batch_id}/decide/",
                                   {"decisions": [{"image": images[0].pk, "decision": "maybe"}]}, format="json")
    assert response.status_code == 400
    assert not CuratorDecision.objects.exists()

    response = curator_client.post(f"/api/review-batches/{batch_id}/decide/",
                                   {"decisions": [{"image": images[0].pk, "decision": "approve"}]}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == "decided" and body["decided_by"] == curator_user.username
    decisions = {d["image"]: d for d in body["decisions"]}
    assert decisions[images[0].pk]["decision"] == "approve" and decisions[images[0].pk]["overrode_proposal"]
    assert [decisions[i.pk]["decision"] for i in images[1:]] == ["reject", "reject"]
    assert images[0].__class__.objects.get(pk=images[0].pk).status == ImageStatus.APPROVED

    response = curator_client.post(f"/api/review-batches/{batch_id}/decide/", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "already_decided"
    assert CuratorDecision.objects.count() == 3
    response = curator_client.patch(
        f"/api/filter-runs/{run.pk}/thresholds/", {"thresholds": {"min_short_side": 10}}, format="json"
    )
    assert response.status_code == 200  # decided images keep their decision; nothing left to batch
    assert ReviewBatch.objects.filter(run=run).count() == 1


def test_resume_and_cancel(curator_client, curator_user, monkeypatch):
    monkeypatch.setattr("aesplatform.common.jobqueue.task_send", lambda name, run_id: None)
    run = services.filter_run_create(created_by=curator_user, image_ids=[factories.ImageFactory().pk],
                                     clip_model_name=TINY_MODEL, clip_checkpoint="", enqueue=False)
    assert (
        curator_client.patch(f"/api/filter-runs/{run.pk}/thresholds/", {"thresholds": {}}, format="json").status_code
        == 409
    )
    assert curator_client.post(f"/api/filter-runs/{run.pk}/resume/").status_code == 202
    assert curator_client.post(f"/api/filter-runs/{run.pk}/cancel/").json()["state"] == "cancelled"
    assert curator_client.post(f"/api/filter-runs/{run.pk}/cancel/").status_code == 409
    assert curator_client.post(f"/api/filter-runs/{run.pk}/resume/").status_code == 409
