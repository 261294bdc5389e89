"""Dataset tasks: thin, idempotent wrappers around aesplatform.datasets.services."""

from __future__ import annotations

from celery import shared_task

from aesplatform.common.jobqueue import task_former_names

from . import services


@shared_task(name="aesplatform.datasets.tasks.export_run", queue="cpu")
def export_run(export_id: int) -> dict:
    """Write an export; a delivery of a finished export, or one while another worker writes it, does nothing."""
    export = services.export_run(export_id=export_id)
    return {"export_id": export_id, "state": export.state if export else "missing"}


task_former_names(export_run, "workers.datasets.export_run")
