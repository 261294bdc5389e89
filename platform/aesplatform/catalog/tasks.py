"""Catalog tasks: thin, idempotent wrappers around aesplatform.catalog.services."""

from __future__ import annotations

from celery import shared_task

from aesplatform.common.jobqueue import task_former_names

from . import services


@shared_task(name="aesplatform.catalog.tasks.import_job_run", queue="cpu")
def import_job_run(job_id: int) -> dict:
    """Run or resume an import job; a delivery of a finished job does nothing (see the service)."""
    job = services.import_job_run(job_id=job_id)
    return {"job_id": job.pk, "state": job.state, "imported": job.imported_count, "errors": job.error_count}


task_former_names(import_job_run, "workers.catalog.import_job_run")
