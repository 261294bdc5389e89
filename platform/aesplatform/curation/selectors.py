"""Reads of curation, as QuerySets (plus a few small aggregates the pages and the API show)."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from .engine.proposals import RANDOM_WEIGHTS_NOTE
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


def filter_run_common_reject_reasons(*, run: FilterRun, sample: int = 500, top: int = 3) -> list[tuple[str, int]]:
    """The checks that reject most often (the reasons with their numbers left out), over a sample of the
    run's rejected proposals: what the run page names when every image is proposed for rejection."""
    import re
    from collections import Counter

    reasons = (FilterResult.objects.filter(run=run, proposed_decision=ProposedDecision.REJECT, error="")
               .order_by("id").values_list("reasons", flat=True)[:sample])
    counter: Counter[str] = Counter()
    for listed in reasons:
        checks = [reason for reason in listed or [] if reason != RANDOM_WEIGHTS_NOTE]  # a note, not a failed check
        for reason in {re.sub(r"\d+(?:\.\d+)?%?", "…", reason) for reason in checks}:
            counter[reason] += 1
    return counter.most_common(top)


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


def filter_run_clip_histograms(*, run: FilterRun, bins: int = 20) -> dict[str, list[int]]:
    """Per CLIP prompt group, the scored images' probabilities counted in `bins` equal bins over [0, 1] (what the
    run page charts next to the thresholds)."""
    counts: dict[str, list[int]] = {}
    rows = (FilterResult.objects.filter(run=run, scored_at__isnull=False).order_by()
            .values_list("clip_probabilities", flat=True).iterator(chunk_size=5000))
    for probabilities in rows:
        for group, p in (probabilities or {}).items():
            if p is None:
                continue
            counts.setdefault(group, [0] * bins)[min(bins - 1, max(0, int(float(p) * bins)))] += 1
    return counts


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


# --- the embedding map and saved selections (the image explorer) ----------------------------------------------


def embedding_map_runs() -> list[dict]:
    """Filter runs that have image embeddings, newest first, with their map (or None): what the map page offers.
    One query: the map's points are not read here."""
    from django.db.models import Exists, OuterRef

    from .models import EmbeddingMap

    maps = EmbeddingMap.objects.filter(run=OuterRef("pk"))
    runs = (FilterRun.objects.filter(Exists(FilterResult.objects.filter(run=OuterRef("pk"), embedding__isnull=False)))
            .annotate(has_map=Exists(maps)).order_by("-id").values("id", "name", "clip_model_name", "random_weights",
                                                                  "has_map", "state")[:50])
    return list(runs)


def embedding_map_get(*, run_id: int):
    """The stored map of a run, or None."""
    from .models import EmbeddingMap

    return EmbeddingMap.objects.filter(run_id=run_id).first()


def image_selection_exists(*, selection_id: int) -> bool:
    from .models import ImageSelection

    return ImageSelection.objects.filter(pk=selection_id).exists()
