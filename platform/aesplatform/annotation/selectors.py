"""Reads of the annotation app: campaign lists, progress, quality statistics, exports."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from aesplatform.accounts.roles import Role, user_has_role
from model_core.standard import DIMENSIONS, OVERALL

from . import agreement as agreement_math
from . import consensus as consensus_math
from . import hotpath
from .models import (
    Agreement,
    Annotation,
    Assignment,
    AssignmentState,
    Campaign,
    CampaignSnapshot,
    CampaignState,
    Consensus,
    ConsensusOrigin,
    Task,
    TaskOrder,
    TaskState,
)
from .services import LeaseContext, campaign_matrices, expected_dimensions


def campaigns_visible_to(*, user) -> QuerySet[Campaign]:
    """Curators see every campaign; annotators the active ones they take part in."""
    if user_has_role(user, Role.CURATOR):
        return Campaign.objects.all()
    return Campaign.objects.filter(state=CampaignState.ACTIVE, annotators=user)


def campaign_for_lease(*, campaign_id: int, user) -> LeaseContext | None:
    """The campaign with whether `user` is one of its annotators, the user's live leases in it and whether any
    lease has run out, in one query (the next-task hot path: pass it to services.task_lease_next as `read`)."""
    now = timezone.now()
    found = hotpath.campaign_for_next_task(campaign_id=campaign_id, user_id=user.pk, now=now)
    if found is None:
        return None
    campaign, member, any_expired, live = found
    return LeaseContext(campaign=campaign, annotator_id=user.pk, read_at=now, member=member,
                        live_lease_ids=tuple(live), any_expired=any_expired)


def campaign_for_annotator(*, campaign_id: int, user) -> Campaign | None:
    return Campaign.objects.filter(pk=campaign_id, annotators=user).first()


def assignments_visible_to(*, user) -> QuerySet[Assignment]:
    """Curators read every assignment; an annotator only their own, in campaigns that still list them."""
    rows = Assignment.objects.all()
    if user_has_role(user, Role.CURATOR):
        return rows
    return rows.filter(annotator=user, task__campaign__annotators=user)


def annotations_visible_to(*, user) -> QuerySet[Annotation]:
    """Curators read every annotation; an annotator only their own."""
    rows = Annotation.objects.select_related("task")
    if user_has_role(user, Role.CURATOR):
        return rows
    return rows.filter(annotator=user)


def annotator_candidates() -> QuerySet:
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[Role.ANNOTATOR, Role.CURATOR, Role.ADMIN]) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


@dataclass
class Progress:
    tasks: int = 0
    done: int = 0
    gold: int = 0
    submitted: int = 0
    live_leases: int = 0
    skipped: int = 0
    flagged: int = 0
    annotations_needed: int = 0

    @property
    def percent(self) -> float:
        return round(100.0 * self.submitted / self.annotations_needed, 1) if self.annotations_needed else 0.0


def campaign_progress(*, campaign: Campaign) -> Progress:
    tasks = Task.objects.filter(campaign=campaign).aggregate(
        tasks=Count("id"), done=Count("id", filter=Q(state=TaskState.DONE)), gold=Count("id", filter=Q(is_gold=True))
    )
    by_state = dict(
        Assignment.objects.filter(task__campaign=campaign).order_by().values_list("state").annotate(n=Count("*"))
    )
    return Progress(
        tasks=tasks["tasks"], done=tasks["done"], gold=tasks["gold"],
        submitted=by_state.get(AssignmentState.SUBMITTED, 0), live_leases=by_state.get(AssignmentState.LEASED, 0),
        skipped=by_state.get(AssignmentState.SKIPPED, 0), flagged=by_state.get(AssignmentState.FLAGGED, 0),
        annotations_needed=tasks["tasks"] * campaign.redundancy,
    )


def annotator_session_counts(*, campaign: Campaign, user) -> dict:
    by_state = dict(
        Assignment.objects.filter(task__campaign=campaign, annotator=user)
        .order_by().values_list("state").annotate(n=Count("*"))
    )
    # open tasks this annotator has not had, counted up to REMAINING_COUNTED (walking the open-task index that far;
    # counting a million of them per page view is not affordable): beyond it, None ("more than REMAINING_COUNTED")
    open_not_mine = (
        Task.objects.filter(campaign=campaign, state=TaskState.OPEN).exclude(assignments__annotator=user)
        .order_by().values("id")[: REMAINING_COUNTED + 1]
    )
    remaining = len(open_not_mine)
    return {
        "submitted": by_state.get(AssignmentState.SUBMITTED, 0),
        "skipped": by_state.get(AssignmentState.SKIPPED, 0),
        "flagged": by_state.get(AssignmentState.FLAGGED, 0),
        "remaining": remaining if remaining <= REMAINING_COUNTED else None,
        "remaining_counted": REMAINING_COUNTED,
    }


REMAINING_COUNTED = 1000


@dataclass
class AnnotatorRow:
    user_id: int
    username: str
    submitted: int = 0
    skipped: int = 0
    flagged: int = 0
    median_time_ms: float | None = None
    loo_correlation: float | None = None
    gold_count: int = 0
    gold_mae: float | None = None
    gold_level_accuracy: float | None = None
    rejected_dimensions: list[str] = field(default_factory=list)


@dataclass
class DimensionStats:
    index: int
    key: str
    name: str
    krippendorff_alpha: float | None
    icc: float | None
    items: int
    annotations: int
    histogram: list[int]


@dataclass
class CampaignStats:
    progress: Progress
    dimensions: list[DimensionStats]
    annotators: list[AnnotatorRow]
    throughput: list[tuple[str, int]]  # (hour ISO, annotations)


HISTOGRAM_BINS = 10


def campaign_stats(*, campaign: Campaign) -> CampaignStats:
    """Progress, agreement per dimension (stored by the last recomputation), histograms, annotator table, throughput."""
    dims = expected_dimensions(campaign.mode)
    data = campaign_matrices(campaign=campaign)
    matrices, image_ids, annotator_ids = data["matrices"], data["image_ids"], data["annotator_ids"]
    stored = {a.dimension: a for a in Agreement.objects.filter(campaign=campaign)}

    dimensions = []
    for d in dims:
        m = matrices[d.index]
        values = m[~np.isnan(m)]
        hist, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
        a = stored.get(d.index)
        dimensions.append(
            DimensionStats(
                index=d.index, key=d.key, name=d.name,
                krippendorff_alpha=a.krippendorff_alpha if a else None, icc=a.icc if a else None,
                items=a.items if a else 0, annotations=int(values.size), histogram=[int(h) for h in hist],
            )
        )

    # per annotator quality on the overall score
    overall = matrices[OVERALL.index]
    gold_ref = np.full(len(image_ids), np.nan)
    if image_ids:
        gold_images = set(Task.objects.filter(campaign=campaign, is_gold=True).values_list("image_id", flat=True))
        refs = dict(
            Consensus.objects.filter(
                image_id__in=gold_images, origin=ConsensusOrigin.IMPORTED, dimension=OVERALL.index
            ).values_list("image_id", "score")
        )
        for i, image_id in enumerate(image_ids):
            if image_id in refs:
                gold_ref[i] = refs[image_id]
    quality = agreement_math.annotator_quality(overall, gold_ref)
    rejected_by_dim: dict[int, list[str]] = defaultdict(list)
    for d in dims:
        mask = consensus_math.bt500_consensus(matrices[d.index]).rejected
        for j in np.flatnonzero(mask):
            rejected_by_dim[int(j)].append(d.key)

    users = dict(get_user_model().objects.filter(id__in=annotator_ids).values_list("id", "username"))
    by_state: dict[int, dict[str, int]] = defaultdict(dict)
    for user_id, state, n in (
        Assignment.objects.filter(task__campaign=campaign).order_by()
        .values_list("annotator_id", "state").annotate(n=Count("*"))
    ):
        by_state[user_id][state] = n
    times: dict[int, list[int]] = defaultdict(list)
    for user_id, ms in current_annotation_rows(campaign=campaign).values_list("annotator_id", "time_spent_ms"):
        times[user_id].append(ms)

    rows = []
    for user_id in sorted(set(annotator_ids) | set(by_state)):
        username = users.get(user_id) or (
            get_user_model().objects.filter(pk=user_id).values_list("username", flat=True).first()
        )
        row = AnnotatorRow(
            user_id=user_id, username=username or str(user_id),
            submitted=by_state[user_id].get(AssignmentState.SUBMITTED, 0),
            skipped=by_state[user_id].get(AssignmentState.SKIPPED, 0),
            flagged=by_state[user_id].get(AssignmentState.FLAGGED, 0),
            median_time_ms=float(np.median(times[user_id])) if times[user_id] else None,
        )
        if user_id in annotator_ids:
            j = annotator_ids.index(user_id)
            q = quality[j]
            row.loo_correlation, row.gold_count = q.loo_correlation, q.gold_count
            row.gold_mae, row.gold_level_accuracy = q.gold_mae, q.gold_level_accuracy
            row.rejected_dimensions = rejected_by_dim.get(j, [])
        rows.append(row)

    throughput = [
        (hour.isoformat(), n)
        for hour, n in Annotation.objects.filter(task__campaign=campaign)
        .annotate(hour=TruncHour("created_at"))
        .order_by("hour")
        .values_list("hour")
        .annotate(n=Count("id"))
    ]
    return CampaignStats(
        progress=campaign_progress(campaign=campaign), dimensions=dimensions, annotators=rows, throughput=throughput
    )


def campaign_counts(*, campaign_ids) -> dict[int, dict]:
    """The counts a CampaignSnapshot keeps, of every campaign in `campaign_ids`, in three statements whatever their
    number (what the worker stores; a page reads the stored ones)."""
    ids = list(campaign_ids)
    counts = {i: dict(tasks=0, tasks_done=0, tasks_gold=0, annotations=0, submitted=0, leased=0, skipped=0,
                      flagged=0) for i in ids}
    for campaign_id, tasks, done, gold in (
        Task.objects.filter(campaign_id__in=ids).order_by().values_list("campaign_id")
        .annotate(n=Count("id"), done=Count("id", filter=Q(state=TaskState.DONE)),
                  gold=Count("id", filter=Q(is_gold=True)))
    ):
        counts[campaign_id].update(tasks=tasks, tasks_done=done, tasks_gold=gold)
    for campaign_id, n in (
        Annotation.objects.filter(task__campaign_id__in=ids, supersedes__isnull=True).order_by()
        .values_list("task__campaign_id").annotate(n=Count("id"))
    ):
        counts[campaign_id]["annotations"] = n
    states = {AssignmentState.SUBMITTED: "submitted", AssignmentState.LEASED: "leased",
              AssignmentState.SKIPPED: "skipped", AssignmentState.FLAGGED: "flagged"}
    for campaign_id, state, n in (
        Assignment.objects.filter(task__campaign_id__in=ids, state__in=list(states)).order_by()
        .values_list("task__campaign_id", "state").annotate(n=Count("id"))
    ):
        counts[campaign_id][states[state]] = n
    return counts


def progress_of_snapshot(*, campaign: Campaign, snapshot: CampaignSnapshot) -> Progress:
    return Progress(
        tasks=snapshot.tasks, done=snapshot.tasks_done, gold=snapshot.tasks_gold, submitted=snapshot.submitted,
        live_leases=snapshot.leased, skipped=snapshot.skipped, flagged=snapshot.flagged,
        annotations_needed=snapshot.tasks * campaign.redundancy,
    )


def campaign_stats_payload(stats: CampaignStats) -> dict:
    """What CampaignSnapshot.stats stores of `stats` (JSON; the progress is in the snapshot's columns). A value
    that is not a finite number (JSON has none) is stored as null, i.e. "not available"."""
    def finite(row: dict) -> dict:
        return {k: agreement_math.finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()}

    return {"dimensions": [finite(asdict(d)) for d in stats.dimensions],
            "annotators": [finite(asdict(a)) for a in stats.annotators],
            "throughput": [list(t) for t in stats.throughput]}


def campaign_stats_stored(*, campaign: Campaign) -> tuple[CampaignStats, object] | None:
    """The dashboard statistics as the worker last computed them, and when: (stats, computed_at); None where the
    campaign has no stored statistics yet (services.campaign_snapshot_refresh computes them)."""
    snapshot = CampaignSnapshot.objects.filter(campaign=campaign).first()
    if snapshot is None or snapshot.stats is None:
        return None
    data = snapshot.stats
    stats = CampaignStats(
        progress=progress_of_snapshot(campaign=campaign, snapshot=snapshot),
        dimensions=[DimensionStats(**d) for d in data["dimensions"]],
        annotators=[AnnotatorRow(**a) for a in data["annotators"]],
        throughput=[tuple(t) for t in data["throughput"]],
    )
    return stats, snapshot.computed_at


def current_annotation_rows(*, campaign: Campaign) -> QuerySet[Annotation]:
    return Annotation.objects.filter(task__campaign=campaign, superseded_by__isnull=True)


def campaign_consensus(*, campaign: Campaign) -> QuerySet[Consensus]:
    return Consensus.objects.filter(campaign=campaign, origin=ConsensusOrigin.CAMPAIGN).order_by(
        "image_id", "dimension"
    )


CSV_HEADER = [
    "annotation_id", "campaign_id", "task_id", "image_id", "is_gold", "annotator", "is_expert", "supersedes",
    "superseded", "created_at", "time_spent_ms", "ui_version", *[d.key for d in DIMENSIONS],
]


# A cell that starts with one of these is run as a formula by spreadsheet programs (CSV injection).
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """Text as a spreadsheet shows it, never as a formula: a leading formula character gets a quote before it
    (OWASP's advice). Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_LEADS):
        return "'" + value
    return value


def annotation_csv_rows(*, campaign: Campaign, chunk_size: int = 2000):
    """Raw annotations of a campaign (every version, superseded ones marked), streamed in id order."""
    yield CSV_HEADER
    rows = (
        Annotation.objects.filter(task__campaign=campaign)
        .order_by("id")
        .values_list(
            "id", "task_id", "task__image_id", "task__is_gold", "annotator__username", "is_expert", "supersedes_id",
            "superseded_by__id", "created_at", "time_spent_ms", "ui_version", *[d.key for d in DIMENSIONS],
        )
    )
    for r in rows.iterator(chunk_size=chunk_size):
        (aid, task_id, image_id, gold, username, expert, supersedes, superseded, created, ms, ui, *scores) = r
        yield [
            aid, campaign.pk, task_id, image_id, int(gold), csv_cell(username), int(expert), supersedes or "",
            int(superseded is not None), created.isoformat(), ms, csv_cell(ui),
            *["" if s is None else repr(float(s)) for s in scores],
        ]


# --- reads for the other apps ---------------------------------------------------------------------------------

CONSENSUS_METHOD = consensus_math.METHOD  # how campaigns' consensus rows are computed (BT.500 screening)


def campaign_list() -> QuerySet[Campaign]:
    return Campaign.objects.all().order_by("id")


def campaign_orders_by_activity(campaign: Campaign) -> bool:
    """Whether the campaign's tasks are leased in active-learning order (task_order "active")."""
    return campaign.task_order == TaskOrder.ACTIVE_LEARNING


def active_learning_campaigns(*, image_ids: list[int] | None = None) -> QuerySet[Campaign]:
    """The open (draft or active) active-learning campaigns; with `image_ids`, those holding any of the images."""
    campaigns = Campaign.objects.filter(task_order=TaskOrder.ACTIVE_LEARNING,
                                        state__in=[CampaignState.DRAFT, CampaignState.ACTIVE])
    if image_ids:
        campaigns = campaigns.filter(tasks__image_id__in=image_ids).distinct()
    return campaigns
