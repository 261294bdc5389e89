"""Curator pages of filtering: role access, starting a run, live thresholds (htmx), the non-JS review form."""

from __future__ import annotations

import pytest
from django.test import Client

from aesplatform.curation import services
from aesplatform.curation.models import CuratorDecision, FilterRun, ReviewBatch
from tests import factories
from tests.support.curation import PIXEL_ONLY, run_in_process
from tests.support.scenes import TINY_MODEL, stored_scenes

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _scored_run(user, count=3):
    images = stored_scenes(count)
    run = services.filter_run_create(created_by=user, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY,
                                     clip_model_name=TINY_MODEL, clip_checkpoint="", enqueue=False)
    return run_in_process(run), images


def test_annotators_get_403_on_every_curation_page(curator_user, annotator_user):
    run, _ = _scored_run(curator_user, count=1)
    batch = ReviewBatch.objects.get(run=run)
    annotator = _client(annotator_user)
    for method, url in [("get", "/filtering/new/"), ("post", "/filtering/new/"), ("get", f"/filtering/{run.pk}/"),
                        ("post", f"/filtering/{run.pk}/thresholds/"), ("get", f"/filtering/batches/{batch.pk}/"),
                        ("post", f"/filtering/batches/{batch.pk}/")]:
        assert getattr(annotator, method)(url).status_code == 403, (method, url)
        assert getattr(Client(), method)(url).status_code == 302, (method, url)  # to the login page
    assert not CuratorDecision.objects.exists()


def test_start_a_run_from_the_page(curator_user, monkeypatch):
    monkeypatch.setattr("aesplatform.common.jobqueue.task_send", lambda name, run_id: None)
    client = _client(curator_user)
    assert client.get("/filtering/new/").status_code == 200
    response = client.post("/filtering/new/", {"clip_model_name": TINY_MODEL, "review_batch_size": 10})
    assert response.status_code == 400 and b"holds no image" in response.content and not FilterRun.objects.exists()
    response = client.post(
        "/filtering/new/", {"clip_model_name": TINY_MODEL, "clip_checkpoint": "/nope.pt", "review_batch_size": 10}
    )
    assert response.status_code == 400 and b"does not exist" in response.content
    factories.ImageFactory(source="shoot-1")
    response = client.post(
        "/filtering/new/", {"clip_model_name": TINY_MODEL, "source": "shoot-1", "review_batch_size": 10}
    )
    run = FilterRun.objects.get()
    assert response.status_code == 302 and response.url == f"/filtering/{run.pk}/"
    page = client.get(response.url)
    assert b'hx-trigger="every 2s"' in page.content  # the status polls while the run is pending


def test_thresholds_form_reproposes_live_with_htmx(curator_user):
    run, _ = _scored_run(curator_user)
    client = _client(curator_user)
    page = client.get(f"/filtering/{run.pk}/")
    assert page.status_code == 200 and b'data-testid="count-keep">3<' in page.content
    assert b"hx-trigger" not in page.content.split(b'id="run-status"')[1].split(b">")[0]  # done: no polling
    response = client.post(f"/filtering/{run.pk}/thresholds/", {"min_short_side": "2000"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'data-testid="count-reject">3<' in response.content
    assert b"<html" not in response.content  # a fragment for htmx to swap in
    response = client.post(f"/filtering/{run.pk}/thresholds/", {"max_faces": "-4"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"max_faces must be" in response.content
    status = client.get(f"/filtering/{run.pk}/?part=status", HTTP_HX_REQUEST="true")
    assert status["HX-Refresh"] == "true"


def test_review_form_without_javascript(curator_user):
    run, images = _scored_run(curator_user)
    batch = ReviewBatch.objects.get(run=run)
    client = _client(curator_user)
    page = client.get(f"/filtering/batches/{batch.pk}/")
    assert page.status_code == 200 and page.content.count(b'class="review__check"') == 3
    shown = [i.pk for i in images]
    response = client.post(f"/filtering/batches/{batch.pk}/", {"shown": shown, "keep": shown[:2]})
    assert response.status_code == 302 and response.url == f"/filtering/{run.pk}/"
    decisions = dict(CuratorDecision.objects.values_list("image_id", "decision"))
    assert decisions == {shown[0]: "approve", shown[1]: "approve", shown[2]: "reject"}
    response = client.post(f"/filtering/batches/{batch.pk}/", {"shown": shown, "keep": shown}, follow=True)
    assert b"already decided" in response.content and CuratorDecision.objects.count() == 3
