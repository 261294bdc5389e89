"""Reads of curation, as QuerySets (plus a few small aggregates the pages and the API show)."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from .models import BatchState, CuratorDecision, FilterResult, FilterRun, ProposedDecision, ReviewBatch


def filter_run_list() -> QuerySet[FilterRun]:
    return FilterRun.objects.select_related("created_by").annotate(
        batch_total=Count("batches", distinct=True),
        batch_pending=Count("batches", filter=Q(batches__state=BatchState.PENDING), distinct=True),
    ).order_by("-id")


def filter_run_get(*, run_id: int) -> FilterRun:
    return filter_run_list().get(pk=run_id)


def filter_run_counts(*, run: FilterRun) -> dict[str, int]:
    """Proposals, errors and decisions of a run (what the run page and the API summarise): as kept on the run
    (FilterRun.result_counts, exact: maintained by the writes that change them) where it has them, else counted."""
    if run.result_counts is not None:
        return dict(run.result_counts)
    return filter_run_counts_count(run=run)


def filter_run_counts_count(*, run: FilterRun) -> dict[str, int]:
    """filter_run_counts, counted over every result and decision of the run."""
    counts = FilterResult.objects.filter(run=run).aggregate(
        scored=Count("id", filter=Q(scored_at__isnull=False)),
        errors=Count("id", filter=~Q(error="")),
        proposed_keep=Count("id", filter=Q(proposed_decision=ProposedDecision.KEEP)),
        proposed_reject=Count("id", filter=Q(proposed_decision=ProposedDecision.REJECT, error="")),
        near_duplicates=Count("id", filter=Q(near_duplicate_of__isnull=False)),
    )
    decided = CuratorDecision.objects.filter(batch__run=run).aggregate(
        approved=Count("id", filter=Q(decision=CuratorDecision.Decision.APPROVE)),
        rejected=Count("id", filter=Q(decision=CuratorDecision.Decision.REJECT)),
        overrides=Count("id", filter=Q(overrode_proposal=True)),
    )
    return {**counts, **decided}


def filter_result_list(*, run: FilterRun) -> QuerySet[FilterResult]:
    return FilterResult.objects.filter(run=run).select_related("image", "batch").defer("embedding").order_by("id")


def filter_result_errors(*, run: FilterRun) -> QuerySet[FilterResult]:
    return filter_result_list(run=run).exclude(error="")


def review_batch_list(*, run: FilterRun) -> QuerySet[ReviewBatch]:
    return ReviewBatch.objects.filter(run=run).select_related("decided_by").annotate(
        size=Count("results", distinct=True),
        proposed_keep=Count("results", filter=Q(results__proposed_decision=ProposedDecision.KEEP), distinct=True),
    ).order_by("number")


def review_batch_get(*, batch_id: int) -> ReviewBatch:
    return ReviewBatch.objects.select_related("run", "decided_by").get(pk=batch_id)


def review_batch_results(*, batch: ReviewBatch) -> QuerySet[FilterResult]:
    """The batch's images, most uncertain first (the order of the review grid)."""
    return (
        FilterResult.objects.filter(batch=batch).select_related("image").defer("embedding")
        .order_by("-uncertainty", "id")
    )


def review_batch_decisions(*, batch: ReviewBatch) -> QuerySet[CuratorDecision]:
    return CuratorDecision.objects.filter(batch=batch).select_related("decided_by").order_by("id")


def review_batch_next_pending(*, run: FilterRun, after: int = 0) -> ReviewBatch | None:
    pending = ReviewBatch.objects.filter(run=run, state=BatchState.PENDING).order_by("number")
    return pending.filter(number__gt=after).first() or pending.first()


# --- reads for the other apps ---------------------------------------------------------------------------------


def image_embeddings(*, image_ids: list[int]) -> dict[int, bytes]:
    """image id -> the raw CLIP image embedding (float16 bytes) of its newest filter result that has one."""
    rows = (FilterResult.objects.filter(image_id__in=image_ids, embedding__isnull=False)
            .order_by("image_id", "-id").values_list("image_id", "embedding"))
    found: dict[int, bytes] = {}
    for image_id, raw in rows:
        if image_id not in found:
            found[image_id] = bytes(raw)
    return found
