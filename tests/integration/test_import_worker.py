"""Imports run by a real Celery worker on the test database: an API upload ends in a succeeded job, and a task
delivered twice (two workers at once, each with its process pool) still stores every image once."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from aesplatform.catalog.models import Image, ImportJob
from aesplatform.catalog.services import import_job_create
from tests.conftest import wait_for
from tests.support.images import jpeg_bytes

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def _finished(job_id: int) -> ImportJob | None:
    job = ImportJob.objects.get(pk=job_id)
    return job if job.state in ("succeeded", "failed") else None


def test_an_api_upload_is_imported_by_the_worker(celery_worker, curator_client):
    files = [SimpleUploadedFile(f"w{i}.jpg", jpeg_bytes(seed=1000 + i)) for i in range(3)]
    files.append(SimpleUploadedFile("broken.jpg", b"not an image"))
    response = curator_client.post("/api/imports/", {"kind": "upload", "files": files}, format="multipart")
    assert response.status_code == 201, response.content
    job = wait_for(lambda: _finished(response.json()["id"]), timeout=60, message="the import job to finish")
    assert job.state == "succeeded", (job.error, celery_worker.logs()[-3000:])
    assert (job.total, job.imported_count, job.error_count) == (4, 3, 1)
    body = curator_client.get(f"/api/imports/{job.pk}/").json()
    assert body["state"] == "succeeded" and body["progress"] == 1.0
    image = Image.objects.filter(import_job=job).first()
    assert curator_client.get(f"/api/images/{image.pk}/thumbnail/").status_code == 200


def test_a_task_delivered_twice_to_two_workers_stores_each_image_once(celery_worker_factory, curator_user):
    from aesplatform.catalog.tasks import import_job_run

    root = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0])
    folder = root / f"twice-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        for index in range(60):  # enough for each worker to use its process pool
            (folder / f"{index:03d}.jpg").write_bytes(jpeg_bytes(64, 48, seed=2000 + index))
        job = import_job_create(created_by=curator_user, kind="folder", path=str(folder), enqueue=False)
        celery_worker_factory()
        celery_worker_factory()
        import_job_run.delay(job.pk)
        import_job_run.delay(job.pk)
        job = wait_for(lambda: _finished(job.pk), timeout=90, message="the import job to finish")
        # the other delivery may still be finishing; let it
        assert job.state == "succeeded", job.error
        job.refresh_from_db()
        assert job.state == "succeeded", job.error
        assert (job.total, job.processed) == (60, 60)
        assert job.imported_count + job.duplicate_count == 60 and job.error_count == 0
        assert Image.objects.filter(original_name__endswith=".jpg", sha256__isnull=False).count() == 60
        assert job.items.filter(outcome="imported").count() == 60
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_message_queued_under_the_name_of_an_earlier_release_is_still_consumed(celery_worker, curator_user):
    """Upgrading a running deployment: tasks were `workers.*` before they moved beside their apps; a message
    waiting under the old name is run by the new worker (aesplatform.celery: former names)."""
    from aesplatform.celery import app

    root = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0])
    folder = root / f"former-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        for index in range(2):
            (folder / f"{index}.jpg").write_bytes(jpeg_bytes(32, 24, seed=3000 + index))
        job = import_job_create(created_by=curator_user, kind="folder", path=str(folder), enqueue=False)
        app.send_task("workers.catalog.import_job_run", args=[job.pk], queue="cpu")
        job = wait_for(lambda: _finished(job.pk), timeout=60, message="the import job to finish")
        assert job.state == "succeeded" and job.imported_count == 2, (job.error, celery_worker.logs()[-3000:])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
