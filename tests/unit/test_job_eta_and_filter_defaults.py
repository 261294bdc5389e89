"""Every job page says how long is left (or that it cannot tell yet) next to its Cancel button; a new filter run
defaults to what runs here and says how long it will take."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from aesplatform.catalog.models import ImportJob
from aesplatform.common.jobs import job_eta_seconds
from aesplatform.curation import services
from aesplatform.curation.models import FilterRun
from aesplatform.datasets.models import Export
from aesplatform.modeling.models import ModelVersion, PrescoreRun, TrainingJob
from annotator_ui.templatetags.job_controls import duration
from tests import factories
from tests.support.modeling import draft_version
from tests.unit.test_job_controls import _page

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_eta_comes_from_progress_and_elapsed_time_and_is_unknown_until_measurable(curator_user):
    now = timezone.now()
    run = FilterRun(name="r", created_by=curator_user, state="running", started_at=now - timedelta(seconds=100),
                    total=40, processed=10)
    assert job_eta_seconds(run, now=now) == pytest.approx(300.0)
    run.processed = 0
    assert job_eta_seconds(run, now=now) is None  # nothing done yet: not measurable
    run.processed, run.state = 10, "pending"
    assert job_eta_seconds(run, now=now) is None  # not running
    run.state, run.started_at = "running", None
    assert job_eta_seconds(run, now=now) is None
    training = TrainingJob(state="running", started_at=now - timedelta(seconds=10), step=5, total_steps=10,
                           eta_seconds=42.0)
    assert job_eta_seconds(training, now=now) == 42.0  # the kind's own estimate first
    training.eta_seconds = None
    assert job_eta_seconds(training, now=now) == pytest.approx(10.0)


def test_durations_read_as_words():
    assert duration(None) == "not available"
    assert duration(0.2) == "under a second"
    assert duration(42) == "42 s"
    assert duration(13 * 60) == "about 13 min"
    assert duration(130 * 60) == "about 2 h 10 min"


def test_every_job_page_shows_eta_and_cancel_while_running(curator_user):
    version = draft_version(curator_user)
    type(version).objects.filter(pk=version.pk).update(state="frozen", frozen_at=timezone.now())
    model = ModelVersion.objects.create(name="m1", checkpoint_path="/nonexistent/m1")
    made = [
        ImportJob.objects.create(kind="folder", source_name="x", created_by=curator_user),
        FilterRun.objects.create(name="run", created_by=curator_user),
        Export.objects.create(version=version, format="humanbeauty", options_digest="0" * 64, created_by=curator_user),
        TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator_user),
        PrescoreRun.objects.create(model_version=model, created_by=curator_user),
    ]
    now = timezone.now()
    client = _client(curator_user)
    for job in made:
        progress = {"step": 25, "total_steps": 100} if isinstance(job, TrainingJob) else {"processed": 25, "total": 100}
        type(job).objects.filter(pk=job.pk).update(state="running", started_at=now - timedelta(seconds=60),
                                                   heartbeat_at=now, attempts=1, **progress)
        page = client.get(_page(job)).content.decode()
        assert 'data-testid="cancel-job"' in page, type(job).__name__
        assert 'data-testid="job-eta"' in page and "about 3 min left" in page, type(job).__name__
        # nothing done yet: said so, not made up
        type(job).objects.filter(pk=job.pk).update(**{k: 0 for k in progress if k in ("processed", "step")})
        page = client.get(_page(job)).content.decode()
        assert "ETA: not available yet" in page, type(job).__name__
        type(job).objects.filter(pk=job.pk).update(state="succeeded", finished_at=now)


def test_a_new_run_defaults_to_the_small_model_without_weights(curator_user, settings):
    settings.AESP_FILTER = {**settings.AESP_FILTER, "DEFAULT_MODEL": "", "DEFAULT_CHECKPOINT": ""}
    assert services.filter_default_model() == (services.SMALL_MODEL, "")
    settings.AESP_FILTER = {**settings.AESP_FILTER, "DEFAULT_CHECKPOINT": "/models/vit-l-14.safetensors"}
    assert services.filter_default_model() == (services.LARGE_MODEL, "/models/vit-l-14.safetensors")
    settings.AESP_FILTER = {**settings.AESP_FILTER, "DEFAULT_MODEL": "ViT-B-32", "DEFAULT_CHECKPOINT": ""}
    assert services.filter_default_model() == ("ViT-B-32", "")

    settings.AESP_FILTER = {**settings.AESP_FILTER, "DEFAULT_MODEL": "", "DEFAULT_CHECKPOINT": ""}
    images = [factories.ImageFactory() for _ in range(3)]
    run = services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], enqueue=False)
    assert (run.clip_model_name, run.clip_checkpoint, run.random_weights) == (services.SMALL_MODEL, "", True)


def test_the_new_run_page_names_the_models_their_weights_and_the_expected_time(curator_user, settings):
    settings.AESP_FILTER = {**settings.AESP_FILTER, "DEFAULT_MODEL": "", "DEFAULT_CHECKPOINT": ""}
    for _ in range(120):
        factories.ImageFactory()
    client = _client(curator_user)
    page = client.get("/filtering/new/").content.decode()
    assert 'value="AESP-Tiny-CLIP"' in page  # the form's default
    assert 'data-testid="model-option-AESP-Tiny-CLIP"' in page and 'data-testid="model-option-ViT-L-14"' in page
    assert "random" in page and "not measured yet" in page
    FilterRun.objects.create(name="earlier", created_by=curator_user, clip_model_name="AESP-Tiny-CLIP",
                             random_weights=True, state="succeeded", seconds_per_image=0.5,
                             finished_at=timezone.now())
    page = client.get("/filtering/new/").content.decode()
    row = page.split('data-testid="model-option-AESP-Tiny-CLIP"')[1].split("</tr>")[0]
    assert "0.500 s" in row and "60 s" in row  # 120 images x 0.5 s
