"""Annotation tasks: recompute a campaign's consensus and agreement after submits (queued on commit by
services._queue_quality_update), and catch up on the campaigns whose update could not be queued."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.utils.dateparse import parse_datetime

from aesplatform.common.jobqueue import task_former_names

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="aesplatform.annotation.tasks.campaign_quality_update", queue="cpu", ignore_result=True)
def campaign_quality_update(campaign_id: int, requested_at: str | None = None) -> bool:
    """Idempotent: a burst of submits queues many of these; the first recomputes, the rest find it fresh."""
    return services.consensus_update_if_stale(
        campaign_id=campaign_id, requested_at=parse_datetime(requested_at) if requested_at else None
    )


task_former_names(campaign_quality_update, "workers.annotation.campaign_quality_update")


@worker_ready.connect
def _consensus_catch_up(**kwargs) -> None:
    """A worker starting (e.g. once the job queue is back): campaigns rated since their last recomputation get one
    queued (a submit made while the broker was down could not queue it)."""
    try:
        stale = services.consensus_catch_up()
    except Exception:  # noqa: BLE001 - a repair must never keep a worker from starting
        logger.exception("consensus catch-up failed")
        return
    if stale:
        logger.info("consensus catch-up: queued updates of campaign(s) %s", stale)
