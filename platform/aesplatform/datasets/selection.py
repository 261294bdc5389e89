"""What a version freezes: one label set per image from the chosen campaigns and/or imported labels.

The consensus rows are pivoted by the database into one row per (image, label set), with the image's columns,
streamed sorted by image id, so nothing but the chosen labels is held in memory (the columns the split needs).

Per image, the candidate label sets are: each selected campaign's consensus (method = the version's consensus
method, count >= min_ratings) and, when the version includes them, the imported labels (a HumanBeauty import).
The chosen set is, in order of preference: complete (all 12 dimensions) unless the version is overall-only;
from a campaign rather than imported; more ratings; the lower campaign id. An image is expert when its chosen
set is complete and the version is not overall-only; otherwise it keeps the overall score only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

from django.db import connection
from django.db.models import Case, Count, F, Max, Min, Q, When

from aesplatform.annotation.models import Consensus, ConsensusOrigin
from aesplatform.catalog.models import ImageStatus
from model_core.standard import NUM_DIMENSIONS, OVERALL_INDEX, score_to_level_index

from .models import DatasetKind, DatasetVersion

EXCLUDED_STATUSES = (ImageStatus.REJECTED, ImageStatus.BROKEN)
CHUNK = 10_000
MAX_REPORTED = 10


@dataclass
class Selection:
    image_ids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # sha256
    sources: list[str] = field(default_factory=list)
    groups: list[int | None] = field(default_factory=list)
    is_expert: list[bool] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    scores: list[tuple[float | None, ...]] = field(default_factory=list)
    rating_counts: list[int] = field(default_factory=list)
    origins: dict[str, int] = field(default_factory=lambda: {"campaign": 0, "imported": 0})
    excluded_status: int = 0
    lacking: list[int] = field(default_factory=list)  # image ids without the labels the kind needs
    lacking_count: int = 0

    def __len__(self) -> int:
        return len(self.image_ids)


def consensus_filter(*, campaign_ids: list[int], include_imported: bool, method: str, min_ratings: int) -> Q:
    q = Q(pk__in=[])
    if include_imported:
        q |= Q(origin=ConsensusOrigin.IMPORTED)
    if campaign_ids:
        q |= Q(origin=ConsensusOrigin.CAMPAIGN, campaign_id__in=campaign_ids, method=method, count__gte=min_ratings)
    return q


def _choose(candidates: list[tuple], kind: str) -> tuple:
    """The preferred candidate row (see _candidate_rows) of one image."""
    if len(candidates) == 1:
        return candidates[0]

    def preference(row):
        campaign_id, n_dims, min_count, overall_count = row[1], row[2], row[3], row[4]
        complete = n_dims == NUM_DIMENSIONS and kind != DatasetKind.OVERALL
        has_overall = overall_count is not None
        return (has_overall, complete, campaign_id is not None, min_count, -(campaign_id or 0))

    return max(candidates, key=preference)


def _candidate_rows(q: Q):
    """One row per (image, label set): image id, campaign id (None: imported), number of dimensions, the lowest
    rating count, the overall score's rating count (None: no overall score), the 12 scores (None where missing),
    then the image's sha256, source, near-duplicate group and status; sorted by image id and campaign id.

    The database pivots the consensus rows (one per dimension) into label sets and joins the image: one scan,
    a sixth of the rows a per-dimension stream would send (PostgreSQL and SQLite alike)."""
    pivot = {f"d{d}": Max(Case(When(dimension=d, then=F("score")))) for d in range(NUM_DIMENSIONS)}
    query = (
        Consensus.objects.filter(q)
        .values("image_id", "campaign_id", "image__sha256", "image__source", "image__near_duplicate_group",
                "image__status")
        .annotate(n_dims=Count("dimension"), min_count=Min("count"),
                  overall_count=Max(Case(When(dimension=OVERALL_INDEX, then=F("count")))), **pivot)
        .order_by("image_id", "campaign_id")
        .values_list("image_id", "campaign_id", "n_dims", "min_count", "overall_count", *pivot,
                     "image__sha256", "image__source", "image__near_duplicate_group", "image__status")
    )
    # The rows as the driver gives them (ints, floats, strings, None): Django's per-value converters of the
    # aggregates cost more than the query itself. A server-side cursor on PostgreSQL: memory stays flat.
    sql, params = query.query.sql_with_params()
    cursor = connection.chunked_cursor()
    try:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK):
            yield from rows
    finally:
        cursor.close()


def select_labels(version: DatasetVersion) -> Selection:
    campaign_ids = sorted(version.campaigns.values_list("pk", flat=True))
    q = consensus_filter(
        campaign_ids=campaign_ids, include_imported=version.include_imported_labels,
        method=version.consensus_method, min_ratings=version.min_ratings,
    )
    selection = Selection()
    kind = version.kind
    first_score = 5
    last_score = first_score + NUM_DIMENSIONS
    overall_at = first_score + OVERALL_INDEX
    excluded = set(EXCLUDED_STATUSES)
    for image_id, rows in groupby(_candidate_rows(q), key=itemgetter(0)):
        row = _choose(list(rows), kind)
        sha256, source, group, status = row[last_score:]
        if status in excluded:
            selection.excluded_status += 1
            continue
        campaign_id, n_dims, overall_count = row[1], row[2], row[4]
        complete = n_dims == NUM_DIMENSIONS
        if overall_count is None or (kind == DatasetKind.EXPERT and not complete):
            selection.lacking_count += 1
            if len(selection.lacking) < MAX_REPORTED:
                selection.lacking.append(image_id)
            continue
        expert = complete and kind != DatasetKind.OVERALL
        overall = row[overall_at]
        if expert:
            scores = row[first_score:last_score]
        else:
            scores = (None,) * (NUM_DIMENSIONS - 1) + (overall,)
        selection.image_ids.append(image_id)
        selection.keys.append(sha256)
        selection.sources.append(source)
        selection.groups.append(group)
        selection.is_expert.append(expert)
        selection.levels.append(score_to_level_index(overall))
        selection.scores.append(scores)
        selection.rating_counts.append(overall_count)
        selection.origins["imported" if campaign_id is None else "campaign"] += 1
    return selection
