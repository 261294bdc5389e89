"""Every job kind offers the same way out, in the API and on its page: a running job whose worker stopped
answering shows "stalled, resuming" and can be resumed or cancelled; a failed one resumed; a pending one cancelled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from aesplatform.catalog.models import ImportJob
from aesplatform.curation.models import FilterRun
from aesplatform.datasets.models import Export
from aesplatform.modeling.models import ModelVersion, PrescoreRun, TrainingJob
from tests.support.modeling import draft_version

API = {ImportJob: "imports", FilterRun: "filter-runs", Export: "exports", TrainingJob: "training-jobs",
       PrescoreRun: "prescore-runs"}


def _page(job) -> str:
    if isinstance(job, ImportJob):
        return reverse("ui:import_detail", kwargs={"pk": job.pk})
    if isinstance(job, FilterRun):
        return reverse("ui:filter-run", args=[job.pk])
    if isinstance(job, Export):
        return reverse("ui:dataset_detail", kwargs={"pk": job.version_id})
    if isinstance(job, TrainingJob):
        return reverse("ui:training_job", kwargs={"pk": job.pk})
    return reverse("ui:prescores")


@pytest.fixture
def jobs(db, curator_user):
    version = draft_version(curator_user)
    type(version).objects.filter(pk=version.pk).update(state="frozen", frozen_at=timezone.now())  # shows its exports
    model = ModelVersion.objects.create(name="m1", checkpoint_path="/nonexistent/m1")
    made = [
        ImportJob.objects.create(kind="folder", source_name="x", created_by=curator_user),
        FilterRun.objects.create(name="run", created_by=curator_user),
        Export.objects.create(version=version, format="humanbeauty", options_digest="0" * 64, created_by=curator_user),
        TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator_user),
        PrescoreRun.objects.create(model_version=model, created_by=curator_user),
    ]
    long_ago = timezone.now() - timedelta(hours=1)
    for job in made:  # what a worker killed mid-job leaves behind
        type(job).objects.filter(pk=job.pk).update(state="running", started_at=long_ago, heartbeat_at=long_ago,
                                                   attempts=1)
        job.refresh_from_db()
    return made


@pytest.fixture
def curator_page(curator_user):
    client = Client()
    client.force_login(curator_user)
    return client


@pytest.mark.parametrize("index", range(5), ids=[m.__name__ for m in API])
def test_the_api_resumes_and_cancels_every_kind_of_job(jobs, curator_client, index):
    job = jobs[index]
    base = f"/api/{API[type(job)]}/{job.pk}"
    detail = curator_client.get(f"{base}/").json()
    assert detail["state"] == "running" and detail["stalled"] is True and detail["attempts"] == 1
    resumed = curator_client.post(f"{base}/resume/")
    assert resumed.status_code == 202 and resumed.json()["state"] == "pending" and not resumed.json()["stalled"]
    cancelled = curator_client.post(f"{base}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert curator_client.post(f"{base}/cancel/").status_code == 409
    again = curator_client.post(f"{base}/resume/")
    assert again.status_code == 409 and again.json()["code"] == "cancelled"


@pytest.mark.parametrize("index", range(5), ids=[m.__name__ for m in API])
def test_every_kind_of_job_page_says_stalled_and_offers_resume_and_cancel(jobs, curator_page, index):
    job = jobs[index]
    page = curator_page.get(_page(job)).content.decode()
    assert "stalled, resuming" in page and 'data-testid="resume-job"' in page and 'data-testid="cancel-job"' in page
    kind_url = lambda action: reverse("ui:job_action", kwargs={  # noqa: E731
        "kind": {ImportJob: "import", FilterRun: "filter-run", Export: "export", TrainingJob: "training-job",
                 PrescoreRun: "prescore-run"}[type(job)], "pk": job.pk, "action": action})
    assert kind_url("resume") in page and kind_url("cancel") in page

    # htmx: the page reloads (its polling starts again)
    response = curator_page.post(kind_url("resume"), HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Refresh"] == "true"
    job.refresh_from_db()
    assert job.state == "pending"
    page = curator_page.get(_page(job)).content.decode()
    assert "stalled, resuming" not in page and 'data-testid="resume-job"' not in page
    # without JavaScript: a redirect to the job's page
    response = curator_page.post(kind_url("cancel"))
    assert response.status_code == 302 and response.url == _page(job)
    job.refresh_from_db()
    assert job.state == "cancelled"
    # a refusal says why, in place of the buttons
    response = curator_page.post(kind_url("resume"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'data-testid="job-action-error"' in response.content
    assert b"was cancelled" in response.content


def test_a_failed_job_offers_resume_and_a_running_one_with_a_live_worker_only_cancel(jobs, curator_page):
    failed, running = jobs[0], jobs[3]
    ImportJob.objects.filter(pk=failed.pk).update(state="failed", error="boom", finished_at=timezone.now())
    TrainingJob.objects.filter(pk=running.pk).update(heartbeat_at=timezone.now())
    page = curator_page.get(_page(failed)).content.decode()
    assert 'data-testid="resume-job"' in page and 'data-testid="cancel-job"' not in page
    page = curator_page.get(_page(running)).content.decode()
    assert 'data-testid="resume-job"' not in page and 'data-testid="cancel-job"' in page
    assert "stalled" not in page
    response = curator_page.post(reverse("ui:job_action", kwargs={"kind": "training-job", "pk": running.pk,
                                                                   "action": "cancel"}))
    assert response.status_code == 302
    running.refresh_from_db()
    assert running.state == "running" and running.cancel_requested  # the live worker stops it at its next step
    assert "stopping at the next safe point" in curator_page.get(_page(running)).content.decode()
    assert curator_page.post(reverse("ui:job_action", kwargs={"kind": "nope", "pk": 1, "action": "resume"})
                             ).status_code == 404
