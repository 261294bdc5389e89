"""What a version freezes: one label set per image from the chosen campaigns and/or imported labels.

The consensus rows and the images are read as two streams sorted by image id and merged, so nothing but the
chosen labels is held in memory (the columns the split needs).

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

from django.db.models import Q

from aesplatform.annotation.models import Consensus, ConsensusOrigin
from aesplatform.catalog.models import Image, ImageStatus
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


def _choose(candidates: dict[int | None, dict[int, tuple[float, int]]], kind: str):
    def preference(item):
        campaign_id, dims = item
        complete = len(dims) == NUM_DIMENSIONS and kind != DatasetKind.OVERALL
        has_overall = OVERALL_INDEX in dims
        count = min(c for _, c in dims.values())
        return (has_overall, complete, campaign_id is not None, count, -(campaign_id or 0))

    return max(candidates.items(), key=preference)


def select_labels(version: DatasetVersion) -> Selection:
    campaign_ids = sorted(version.campaigns.values_list("pk", flat=True))
    q = consensus_filter(
        campaign_ids=campaign_ids, include_imported=version.include_imported_labels,
        method=version.consensus_method, min_ratings=version.min_ratings,
    )
    consensus = (
        Consensus.objects.filter(q).order_by("image_id", "campaign_id", "dimension")
        .values_list("image_id", "campaign_id", "dimension", "score", "count").iterator(chunk_size=CHUNK)
    )
    images = (
        Image.objects.filter(pk__in=Consensus.objects.filter(q).values("image_id")).order_by("pk")
        .values_list("pk", "sha256", "source", "near_duplicate_group", "status").iterator(chunk_size=CHUNK)
    )
    selection = Selection()
    kind = version.kind
    image_iter = iter(images)
    for image_id, rows in groupby(consensus, key=itemgetter(0)):
        image = next(image_iter)
        while image[0] != image_id:  # cannot lag: both streams hold exactly the same image ids, sorted
            image = next(image_iter)
        if image[4] in EXCLUDED_STATUSES:
            selection.excluded_status += 1
            continue
        candidates: dict[int | None, dict[int, tuple[float, int]]] = {}
        for _, campaign_id, dimension, score, count in rows:
            candidates.setdefault(campaign_id, {})[dimension] = (score, count)
        campaign_id, dims = _choose(candidates, kind)
        complete = len(dims) == NUM_DIMENSIONS
        if OVERALL_INDEX not in dims or (kind == DatasetKind.EXPERT and not complete):
            selection.lacking_count += 1
            if len(selection.lacking) < MAX_REPORTED:
                selection.lacking.append(image_id)
            continue
        expert = complete and kind != DatasetKind.OVERALL
        overall = dims[OVERALL_INDEX][0]
        if expert:
            scores = tuple(dims[d][0] for d in range(NUM_DIMENSIONS))
        else:
            scores = (None,) * (NUM_DIMENSIONS - 1) + (overall,)
        selection.image_ids.append(image_id)
        selection.keys.append(image[1])
        selection.sources.append(image[2])
        selection.groups.append(image[3])
        selection.is_expert.append(expert)
        selection.levels.append(score_to_level_index(overall))
        selection.scores.append(scores)
        selection.rating_counts.append(dims[OVERALL_INDEX][1])
        selection.origins["imported" if campaign_id is None else "campaign"] += 1
    return selection
