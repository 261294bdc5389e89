"""Catalog tasks: thin, idempotent wrappers around aesplatform.catalog.services."""

from __future__ import annotations

from celery import shared_task

from aesplatform.common.jobqueue import task_former_names
from aesplatform.common.objectstore import StorageUnavailable, storage_retry_delay

from . import services


@shared_task(name="aesplatform.catalog.tasks.import_job_run", queue="cpu")
def import_job_run(job_id: int) -> dict:
    """Run or resume an import job; a delivery of a finished job does nothing (see the service). A job that the
    object store stopped is queued again after a delay, until the retries are spent (then it fails, resumable)."""
    delay = storage_retry_delay(import_job_run.request.retries)
    try:
        job = services.import_job_run(job_id=job_id, storage_retry_s=delay)
    except StorageUnavailable as exc:
        raise import_job_run.retry(exc=exc, countdown=delay, max_retries=import_job_run.request.retries + 1) from None
    return {"job_id": job.pk, "state": job.state, "imported": job.imported_count, "errors": job.error_count}


task_former_names(import_job_run, "workers.catalog.import_job_run")
