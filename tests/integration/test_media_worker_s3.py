"""A real Celery worker with only the object store in common with the web side (its own media folder, var folder
and cache; the store's settings from its environment): an upload import, a filter run and a pre-scoring run all
succeed with every file in the bucket, and a store outage in the middle of a run puts the run back to pending
with the store's message; once the store answers, the run's retry finishes it and no image is marked broken."""

from __future__ import annotations

import shutil

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from aesplatform.catalog import services as catalog
from aesplatform.catalog.models import Image, ImageStatus, ImportJob
from aesplatform.common import jobs
from aesplatform.common.models import JobState
from aesplatform.curation import services as curation
from aesplatform.curation.models import FilterResult, FilterRun
from aesplatform.modeling import services as modeling
from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun
from tests.conftest import wait_for
from tests.support.scenes import jpeg_bytes, scene, tiny_run_kwargs
from tests.unit.test_media_on_object_store import PIXEL_ONLY, tiny_model_dir

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


def _released_by_the_outage(model, pk) -> bool:
    job = model.objects.get(pk=pk)
    assert job.state not in (JobState.FAILED, JobState.SUCCEEDED), (job.state, job.error)
    return job.state == JobState.PENDING and "unavailable" in job.error


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(420)
def test_worker_without_shared_media_imports_filters_and_prescores_through_the_store(s3_storage, tmp_path,
                                                                                    celery_worker_factory,
                                                                                    curator_user):
    own = {name: tmp_path / f"worker-{name}" for name in ("media", "var", "cache")}
    for folder in own.values():
        folder.mkdir()
    worker = celery_worker_factory(
        "cpu,gpu", **s3_storage.env(), DJANGO_MEDIA_ROOT=str(own["media"]), AESP_VAR_DIR=str(own["var"]),
        AESP_STORAGE_CACHE_DIR=str(own["cache"]), AESP_STORAGE_RETRY_S="1", AESP_FILTER_NUM_WORKERS="0",
    )
    logs = lambda: worker.logs()[-3000:]  # noqa: E731

    # 1. an upload import: staged in the bucket by the web side, imported by the worker; the store is down when
    # the worker starts it: released with the message, retried by the task once the store answers
    files = [SimpleUploadedFile(f"s{i}.jpg", jpeg_bytes(scene(i, 96, 72)), content_type="image/jpeg")
             for i in range(4)]
    job = catalog.import_job_create(created_by=curator_user, kind="upload", files=files, enqueue=False)
    s3_storage.proxy.cut()
    try:
        jobs.job_enqueue(job=job)
        wait_for(lambda: _released_by_the_outage(ImportJob, job.pk), timeout=120,
                 message=f"the import to be released; worker log:\n{logs()}")
        assert not Image.objects.exists()
    finally:
        s3_storage.proxy.restore()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED, timeout=120,
             message=f"the import's retry; worker log:\n{logs()}")
    images = list(Image.objects.order_by("pk"))
    assert len(images) == 4
    keys = s3_storage.keys()
    assert all(i.file.name in keys and i.thumbnail.name in keys for i in images)

    # 2. a filter run; the store is down when the worker fetches the images: released with the message, then
    # retried by the task once it answers
    s3_storage.proxy.cut()
    try:
        run = curation.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                         review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
        wait_for(lambda: _released_by_the_outage(FilterRun, run.pk), timeout=120,
                 message=f"the filter run to be released; worker log:\n{logs()}")
    finally:
        s3_storage.proxy.restore()
    wait_for(lambda: FilterRun.objects.get(pk=run.pk).state == JobState.SUCCEEDED, timeout=120,
             message=f"the filter run's retry; worker log:\n{logs()}")
    assert not FilterResult.objects.filter(run=run).exclude(error="").exists()
    assert set(Image.objects.values_list("status", flat=True)) == {ImageStatus.FILTERED}

    # 3. a pre-scoring run with a cold cache, the same outage
    shutil.rmtree(own["cache"])
    version = ModelVersion.objects.create(name="tiny", checkpoint_path=tiny_model_dir())
    s3_storage.proxy.cut()
    try:
        prescore = modeling.prescore_run_create(created_by=curator_user, model_version=version, batch_size=2,
                                                image_ids=[i.pk for i in images])
        wait_for(lambda: _released_by_the_outage(PrescoreRun, prescore.pk), timeout=120,
                 message=f"the pre-scoring run to be released; worker log:\n{logs()}")
    finally:
        s3_storage.proxy.restore()
    wait_for(lambda: PrescoreRun.objects.get(pk=prescore.pk).state == JobState.SUCCEEDED, timeout=120,
             message=f"the pre-scoring run's retry; worker log:\n{logs()}")
    assert Prescore.objects.filter(model_version=version).count() == 4
    assert PrescoreRun.objects.get(pk=prescore.pk).attempts >= 2
    assert not Image.objects.filter(status=ImageStatus.BROKEN).exists()

    # nothing went through a media folder: not the worker's, not this process's
    assert [p for p in own["media"].rglob("*") if p.is_file()] == []
    assert any(p.is_file() for p in own["cache"].rglob("*"))  # what it read, it read into its own cache
    assert s3_storage.keys("imports/") == []
    assert "released, the store is unavailable" in worker.logs()
