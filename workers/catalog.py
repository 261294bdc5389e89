"""Catalog tasks: thin, idempotent wrappers around aesplatform.catalog.services.

The services are imported inside the task: this module is loaded with the Celery app, before Django's app
registry is ready.
"""

from __future__ import annotations

from aesplatform.celery import app


@app.task(name="workers.catalog.import_job_run")
def import_job_run(job_id: int) -> dict:
    """Run or resume an import job; a delivery of a finished job does nothing (see the service)."""
    from aesplatform.catalog.services import import_job_run as run

    job = run(job_id=job_id)
    return {"job_id": job.pk, "state": job.state, "imported": job.imported_count, "errors": job.error_count}
