"""Annotation tasks: recompute a campaign's consensus and agreement after submits (queued on commit)."""

from __future__ import annotations

from celery import shared_task
from django.utils.dateparse import parse_datetime


@shared_task(name="workers.annotation.campaign_quality_update", queue="cpu", ignore_result=True)
def campaign_quality_update(campaign_id: int, requested_at: str | None = None) -> bool:
    """Idempotent: a burst of submits queues many of these; the first recomputes, the rest find it fresh."""
    from aesplatform.annotation.services import consensus_update_if_stale

    return consensus_update_if_stale(
        campaign_id=campaign_id, requested_at=parse_datetime(requested_at) if requested_at else None
    )
