"""Curation tasks (CLIP filtering, on the `gpu` queue): thin, idempotent wrappers around
aesplatform.curation.services."""

from __future__ import annotations

import logging

from celery import current_task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from aesplatform.common.jobqueue import task_former_names
from aesplatform.common.models import JobState
from aesplatform.common.objectstore import StorageUnavailable, storage_retry_delay
from aesplatform.common.processes import children_allowed

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="aesplatform.curation.tasks.filter_run_execute", queue="gpu")
def filter_run_execute(run_id: int) -> dict:
    """Score what is left of a filter run, then propose and batch. Safe to deliver twice or after a kill. A run
    that the object store stopped is queued again after a delay (the service put it back to pending), until the
    retries are spent (then the service fails it with the store's message)."""
    delay = storage_retry_delay(filter_run_execute.request.retries)
    try:
        with children_allowed():  # the DataLoader's decode workers
            run = services.filter_run_execute(run_id=run_id, storage_retry_s=delay, worker=_node())
    except StorageUnavailable as exc:
        raise filter_run_execute.retry(exc=exc, countdown=delay,
                                       max_retries=filter_run_execute.request.retries + 1) from None
    except SoftTimeLimitExceeded:
        # Everything committed so far stays; the next delivery continues from the first unscored image.
        filter_run_execute.apply_async(args=[run_id], countdown=1)
        return {"run": run_id, "state": "requeued"}
    if run is not None and run.state == JobState.SUCCEEDED:
        _embedding_map_queue(run_id)
    return {"run": run_id, "state": run.state if run else "missing"}


def _embedding_map_queue(run_id: int) -> None:
    """A finished run's embedding map is computed once, in the background (the map page can also ask again)."""
    try:
        embedding_map_compute.apply_async(args=[run_id])
    except Exception:  # noqa: BLE001 - the run itself succeeded; the map page offers to compute the map
        logger.exception("could not queue the embedding map of filter run %s", run_id)


@shared_task(name="aesplatform.curation.tasks.filter_run_assist", queue="gpu", ignore_result=True)
def filter_run_assist(run_id: int) -> dict:
    """Score chunks of a run another worker holds, until none is free (asked by that worker; ends at once when there
    is nothing to take). Safe to deliver twice: each chunk is claimed by one worker."""
    with children_allowed():  # the DataLoader's decode workers
        return services.filter_run_assist(run_id=run_id, worker=_node())


def _node() -> str:
    """The Celery node name of this worker ("gpu@host"): who scored which chunk."""
    return (getattr(current_task.request, "hostname", None) if current_task else None) or ""


task_former_names(filter_run_execute, "workers.gpu.filter_run_execute")


@shared_task(name="aesplatform.curation.tasks.embedding_map_compute", queue="cpu", ignore_result=True)
def embedding_map_compute(run_id: int) -> None:
    """Project a filter run's embeddings to 2-D for the embedding map (idempotent: a new delivery recomputes)."""
    services.embedding_map_compute(run_id=run_id)
