"""Reads of the annotation app: campaign lists, progress, quality statistics, exports."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import TruncHour
from django.utils import timezone

from aesplatform.accounts.roles import SIMULATED_GROUP, Role, user_has_role
from aesplatform.common.pagination import COUNT_CAP, capped_count
from model_core.standard import DIMENSIONS, LEVEL_UPPER_BOUNDS, NUM_LEVELS, OVERALL, score_to_level_index

from . import agreement as agreement_math
from . import consensus as consensus_math
from . import hotpath
from .models import (
    Agreement,
    Annotation,
    AnnotationReview,
    Assignment,
    AssignmentState,
    Campaign,
    CampaignSnapshot,
    CampaignState,
    Consensus,
    ConsensusMethod,
    ConsensusOrigin,
    RaterStats,
    Task,
    TaskOrder,
    TaskState,
)
from .services import LeaseContext, campaign_matrices, current_annotations, expected_dimensions


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


def annotator_candidates(*, include_simulated: bool = False) -> QuerySet:
    """Active users who may annotate; the demo loop's simulated accounts (SIMULATED_GROUP) are left out unless
    asked for."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=[Role.ANNOTATOR, Role.CURATOR, Role.ADMIN]) | Q(is_superuser=True))
    )
    if not include_simulated:
        users = users.exclude(groups__name=SIMULATED_GROUP)
    return (
        users
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
    # rejected by the campaign's consensus method, as the last recomputation stored it (RaterStats)
    rejected_by_dim: dict[int, list[str]] = defaultdict(list)
    positions = {a: j for j, a in enumerate(annotator_ids)}
    for annotator_id, dimension in (
        RaterStats.objects.filter(campaign=campaign, rejected=True).order_by("dimension")
        .values_list("annotator_id", "dimension")
    ):
        if annotator_id in positions:
            rejected_by_dim[positions[annotator_id]].append(DIMENSIONS[dimension].key)

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
    """The ratings that count (newest versions, rejected ones left out): services.current_annotations."""
    return current_annotations(campaign=campaign)


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

CONSENSUS_METHOD = consensus_math.METHOD  # the method of the rows written before methods could be chosen
CONSENSUS_METHODS = tuple(ConsensusMethod.values)  # what a campaign's consensus can be made by
DEFAULT_CONSENSUS_METHOD = consensus_math.DEFAULT_METHOD


def campaign_consensus_methods(*, campaign_ids: list[int]) -> dict[int, tuple[str, str, set[str]]]:
    """Per campaign: its name, its consensus method and the methods its stored consensus rows were made by (one,
    the same, unless a recomputation after a change of method is still to run)."""
    found = {pk: (name, method, set()) for pk, name, method in
             Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "name", "consensus_method")}
    rows = (Consensus.objects.filter(campaign_id__in=campaign_ids, origin=ConsensusOrigin.CAMPAIGN).order_by()
            .values_list("campaign_id", "method").distinct())
    for campaign_id, method in rows:
        found[campaign_id][2].add(method)
    return found


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


# --- the review stream (curators) -----------------------------------------------------------------------------------

REVIEW_FAR = 0.2  # a deviation from the consensus of one level's width or more is highlighted
REVIEW_STATUSES = ("unreviewed", "all", "accepted", "corrected", "rejected")
REVIEW_ORDERS = ("submitted", "deviation")
REVIEW_COUNT_CAP = COUNT_CAP  # the queue is counted this far ("more than 10,000" beyond), like the API's lists


class ConsensusValue(NamedTuple):
    score: float
    count: int


@dataclass
class ReviewEntry:
    """One rating in a campaign's review queue: its current version and what the filters and the order read."""

    annotation_id: int
    original_id: int
    task_id: int
    image_id: int
    annotator_id: int
    is_gold: bool
    scores: dict[str, float | None]
    review_state: str | None = None  # None: never reviewed
    reviewed_version_id: int | None = None
    flagged: bool = False
    gold_reference: float | None = None
    consensus: dict[str, ConsensusValue] = field(default_factory=dict)  # dimension key -> the campaign's consensus

    @property
    def reviewed(self) -> bool:
        """Reviewed as it is now (a correction by the annotator after the review makes it unreviewed again)."""
        return self.review_state is not None and self.reviewed_version_id == self.annotation_id

    @property
    def status(self) -> str:
        return self.review_state if self.reviewed else "unreviewed"

    @property
    def rejected(self) -> bool:
        return self.review_state == "rejected"

    def deviations(self) -> dict[str, float]:
        return {
            key: value - self.consensus[key].score
            for key, value in self.scores.items() if value is not None and key in self.consensus
        }

    @property
    def deviation(self) -> float | None:
        """The largest absolute deviation from the consensus over the rated dimensions (None: no consensus yet)."""
        found = [abs(v) for v in self.deviations().values()]
        return max(found) if found else None

    @property
    def gold_failed(self) -> bool:
        """A gold image rated at another level than its reference label (the overall score)."""
        rated = self.scores.get(OVERALL.key)
        if self.gold_reference is None or rated is None:
            return False
        return score_to_level_index(rated) != score_to_level_index(self.gold_reference)


def _level_index(field: str) -> Case:
    """model_core.standard.score_to_level_index of a score column, in SQL (the same bounds, the same comparisons)."""
    return Case(*[When(**{f"{field}__lt": upper}, then=Value(i)) for i, upper in enumerate(LEVEL_UPPER_BOUNDS)],
                default=Value(NUM_LEVELS - 1), output_field=IntegerField())


def _check_review_query(status: str, order: str) -> None:
    if status not in REVIEW_STATUSES:
        raise ValueError(f"unknown review status {status!r}")
    if order not in REVIEW_ORDERS:
        raise ValueError(f"unknown review order {order!r}")


def review_rows(
    *, campaign: Campaign, annotator_id: int | None = None, status: str = "unreviewed", flagged: bool = False,
    gold_failed: bool = False,
) -> QuerySet[Annotation]:
    """The current versions of the campaign's ratings (rejected ones included) that the review filters keep, as a
    query (unordered): every filter is a condition on indexed columns, so a page of it reads a page of rows.

    - `status`: "unreviewed" (no review of this version: a correction after a review makes it unreviewed again),
      "all", or the state of the review of this version (accepted, corrected, rejected);
    - `flagged`: the image was flagged as broken by someone; `gold_failed`: a gold image whose overall score is at
      another level than its imported reference."""
    _check_review_query(status, "submitted")
    # current: no correction supersedes it (NOT EXISTS over the unique supersedes index; the planner estimates it
    # well, unlike the LEFT JOIN ... IS NULL of superseded_by__isnull)
    rows = Annotation.objects.filter(campaign=campaign).filter(
        ~Exists(Annotation.objects.filter(supersedes_id=OuterRef("pk"))))
    if annotator_id is not None:
        rows = rows.filter(annotator_id=annotator_id)
    # a review is of this version when its `version` is this row (one review per chain: the original's)
    of_this_version = AnnotationReview.objects.filter(version_id=OuterRef("pk"))
    if status == "unreviewed":
        rows = rows.filter(~Exists(of_this_version))
    elif status != "all":
        rows = rows.filter(Exists(of_this_version.filter(state=status)))
    if flagged:
        # the flagged tasks first (one statement over a partial index of the flags, few rows), then their ratings
        # by the task index: as a subquery, the planner walks every rating in id order hoping to meet one soon
        flagged_tasks = list(Assignment.objects.filter(state=AssignmentState.FLAGGED, task__campaign=campaign)
                             .order_by().values_list("task_id", flat=True).distinct())
        rows = rows.filter(task_id__in=flagged_tasks)
    if gold_failed:  # from the campaign's gold tasks (a partial index of them)
        rows = rows.filter(task_id__in=Task.objects.filter(campaign=campaign, is_gold=True).values("id"))
        references = (
            Consensus.objects.filter(image_id=OuterRef("task__image_id"), origin=ConsensusOrigin.IMPORTED,
                                     dimension=OVERALL.index)
            .annotate(reference_level=_level_index("score"))
            .exclude(reference_level=OuterRef("rated_level"))
        )
        rows = (rows.filter(task__is_gold=True, **{f"{OVERALL.key}__isnull": False})
                .annotate(rated_level=_level_index(OVERALL.key)).filter(Exists(references)))
    return rows


def _review_ordering(order: str, *, reverse: bool = False) -> list:
    """Submission order (id), or the largest stored deviation first (NULL, not computed, last), then id."""
    if order == "deviation":
        if reverse:
            return [F("review_deviation").asc(nulls_first=True), F("id").desc()]
        return [F("review_deviation").desc(nulls_last=True), F("id").asc()]
    return ["-id"] if reverse else ["id"]


def _review_before(order: str, annotation_id: int, deviation: float | None) -> Q:
    """The rows before (annotation_id, deviation) in the queue's order."""
    if order != "deviation":
        return Q(pk__lt=annotation_id)
    if deviation is None:
        return Q(review_deviation__isnull=False) | Q(review_deviation__isnull=True, pk__lt=annotation_id)
    return Q(review_deviation__gt=deviation) | Q(review_deviation=deviation, pk__lt=annotation_id)


def _review_after(order: str, annotation_id: int, deviation: float | None) -> Q:
    """The rows after (annotation_id, deviation) in the queue's order."""
    if order != "deviation":
        return Q(pk__gt=annotation_id)
    if deviation is None:
        return Q(review_deviation__isnull=True, pk__gt=annotation_id)
    return (Q(review_deviation__lt=deviation) | Q(review_deviation=deviation, pk__gt=annotation_id)
            | Q(review_deviation__isnull=True))


def review_entries(*, campaign: Campaign, annotation_ids: list[int]) -> list[ReviewEntry]:
    """The ReviewEntry of each of these annotations of the campaign, in the given order, in two statements whatever
    their number (the rows with their original, review, flag and gold reference; the consensus of their images)."""
    if not annotation_ids:
        return []
    keys = [d.key for d in DIMENSIONS]
    # the original of the rating (the chain's first row: where its review lives)
    original = Annotation.objects.filter(task_id=OuterRef("task_id"), annotator_id=OuterRef("annotator_id"),
                                         supersedes__isnull=True).order_by().values("pk")[:1]
    review = AnnotationReview.objects.filter(annotation_id=OuterRef("original")).order_by()
    reference = Consensus.objects.filter(image_id=OuterRef("task__image_id"), origin=ConsensusOrigin.IMPORTED,
                                         dimension=OVERALL.index).order_by().values("score")[:1]
    rows = (
        Annotation.objects.filter(pk__in=annotation_ids, campaign=campaign)
        .annotate(original=Subquery(original))
        .annotate(review_state=Subquery(review.values("state")[:1]),
                  review_version=Subquery(review.values("version_id")[:1]),
                  image_flagged=Exists(Assignment.objects.filter(task_id=OuterRef("task_id"),
                                                                 state=AssignmentState.FLAGGED)),
                  reference=Subquery(reference))
        .values_list("id", "original", "task_id", "task__image_id", "annotator_id", "task__is_gold", "review_state",
                     "review_version", "image_flagged", "reference", *keys)
    )
    found = {v[0]: v for v in rows}
    values = [found[i] for i in annotation_ids if i in found]
    consensus: dict[int, dict[str, ConsensusValue]] = defaultdict(dict)
    for image_id, dimension, score, count in Consensus.objects.filter(
        campaign=campaign, origin=ConsensusOrigin.CAMPAIGN, image_id__in={v[3] for v in values}
    ).values_list("image_id", "dimension", "score", "count"):
        consensus[image_id][DIMENSIONS[dimension].key] = ConsensusValue(score, count)
    return [
        ReviewEntry(
            annotation_id=annotation_id, original_id=original_id, task_id=task_id, image_id=image_id,
            annotator_id=user_id, is_gold=is_gold, scores=dict(zip(keys, scores)), review_state=state,
            reviewed_version_id=version_id, flagged=flagged, gold_reference=reference if is_gold else None,
            consensus=consensus.get(image_id, {}),
        )
        for (annotation_id, original_id, task_id, image_id, user_id, is_gold, state, version_id, flagged, reference,
             *scores) in values
    ]


def review_queue(
    *, campaign: Campaign, annotator_id: int | None = None, status: str = "unreviewed", flagged: bool = False,
    gold_failed: bool = False, order: str = "submitted", limit: int | None = None,
) -> list[ReviewEntry]:
    """The current version of the campaign's ratings (rejected ones included), filtered (see review_rows) and
    ordered: in submission order, or the farthest from the consensus first (the deviation the last consensus
    recomputation stored; ratings without one last); the first `limit` of them (None: all)."""
    _check_review_query(status, order)
    rows = review_rows(campaign=campaign, annotator_id=annotator_id, status=status, flagged=flagged,
                       gold_failed=gold_failed).order_by(*_review_ordering(order)).values_list("pk", flat=True)
    ids = list(rows if limit is None else rows[:limit])
    return review_entries(campaign=campaign, annotation_ids=ids)


def review_queue_count(*, campaign: Campaign, annotator_id: int | None = None, status: str = "unreviewed",
                       flagged: bool = False, gold_failed: bool = False) -> int | None:
    """How many ratings the filters keep, counted up to REVIEW_COUNT_CAP (None: more than that)."""
    counted = capped_count(review_rows(campaign=campaign, annotator_id=annotator_id, status=status, flagged=flagged,
                                       gold_failed=gold_failed), cap=REVIEW_COUNT_CAP)
    return None if counted > REVIEW_COUNT_CAP else counted


@dataclass
class ReviewPage:
    """One rating of the review stream and where it stands: its position and the queue's size (None: more than
    REVIEW_COUNT_CAP, counted no further), the ratings before and after it (None: none)."""

    entry: ReviewEntry | None
    position: int | None
    size: int | None
    prev_id: int | None
    next_id: int | None
    cap: int = 0


def review_stream_page(
    *, campaign: Campaign, at: int | None = None, annotator_id: int | None = None, status: str = "unreviewed",
    flagged: bool = False, gold_failed: bool = False, order: str = "submitted",
) -> ReviewPage:
    """The rating `at` of the filtered, ordered queue (the first one where `at` is not in it), with its neighbours
    and position, by keyset (a constant number of statements, each reading about one page of an index)."""
    _check_review_query(status, order)
    rows = review_rows(campaign=campaign, annotator_id=annotator_id, status=status, flagged=flagged,
                       gold_failed=gold_failed)
    current = None
    if at is not None:
        current = rows.filter(pk=at).values_list("pk", "review_deviation").first()
    if current is None:
        current = rows.order_by(*_review_ordering(order)).values_list("pk", "review_deviation").first()
    if current is None:
        return ReviewPage(entry=None, position=None, size=0, prev_id=None, next_id=None, cap=REVIEW_COUNT_CAP)
    annotation_id, deviation = current
    prev_id = (rows.filter(_review_before(order, annotation_id, deviation))
               .order_by(*_review_ordering(order, reverse=True)).values_list("pk", flat=True).first())
    next_id = (rows.filter(_review_after(order, annotation_id, deviation))
               .order_by(*_review_ordering(order)).values_list("pk", flat=True).first())
    before = capped_count(rows.filter(_review_before(order, annotation_id, deviation)), cap=REVIEW_COUNT_CAP)
    size = capped_count(rows, cap=REVIEW_COUNT_CAP)
    return ReviewPage(
        entry=review_entries(campaign=campaign, annotation_ids=[annotation_id])[0],
        position=before + 1 if before < REVIEW_COUNT_CAP else None,
        size=size if size <= REVIEW_COUNT_CAP else None, prev_id=prev_id, next_id=next_id, cap=REVIEW_COUNT_CAP,
    )


def review_order_computed_at(*, campaign: Campaign):
    """When the deviations the "far from the consensus first" order reads were stored: the last consensus
    recomputation of the campaign (None: never)."""
    return Agreement.objects.filter(campaign=campaign).aggregate(at=Max("computed_at"))["at"]


def rating_history(*, annotation: Annotation) -> list[Annotation]:
    """Every version of a rating, oldest first, with who corrected it."""
    return list(
        Annotation.objects.filter(task_id=annotation.task_id, annotator_id=annotation.annotator_id)
        .select_related("corrected_by").order_by("id")
    )


def campaign_annotators(*, campaign: Campaign) -> QuerySet:
    """The users who rated in the campaign (for the review stream's annotator filter)."""
    rated = Annotation.objects.filter(annotator_id=OuterRef("pk"), campaign=campaign)
    return get_user_model().objects.filter(Exists(rated)).order_by("username")


# --- raters as the consensus method sees them (the campaign dashboard's "Raters" section) ---------------------


@dataclass
class RaterView:
    user_id: int
    username: str
    ratings: int
    bias: float | None
    bias_ci: tuple[float | None, float | None]
    inconsistency: float | None
    inconsistency_ci: tuple[float | None, float | None]
    weight: float | None
    modelled: bool
    flag: str  # "" | "rejected" | "down-weighted"
    drift: list[dict]
    drift_range: float | None  # largest minus smallest block bias (None with fewer than two blocks)
    ratings_url: str


@dataclass
class RaterDimension:
    index: int
    key: str
    name: str
    raters: list[RaterView]
    flagged: int


@dataclass
class CampaignRaters:
    method: str
    method_name: str
    methods: list[tuple[str, str]]
    stored_method: str | None  # the method of the stored estimates (None: not computed yet)
    computed_at: object
    dimensions: list[RaterDimension]
    drift_block: int

    @property
    def stale(self) -> bool:
        """The stored estimates were made by another method (a recomputation is queued)."""
        return self.stored_method is not None and self.stored_method != self.method


def rater_ratings_url(*, campaign_id: int, annotator_id: int) -> str:
    """Where a rater's ratings of the campaign are one click away: the campaign's review stream, filtered."""
    return f"/campaigns/{campaign_id}/review/?annotator={annotator_id}"


def campaign_raters(*, campaign: Campaign) -> CampaignRaters:
    """Per dimension of the campaign, each rater's bias and inconsistency (95 % intervals), weight, flag and drift,
    as the last consensus recomputation stored them (RaterStats): flagged raters first, then by name."""
    from aesplatform.annotation.services import DRIFT_BLOCK

    rows = list(RaterStats.objects.filter(campaign=campaign).select_related("annotator")
                .order_by("dimension", "annotator__username"))
    by_dim: dict[int, list[RaterView]] = defaultdict(list)
    for r in rows:
        biases = [p["bias"] for p in r.drift]
        by_dim[r.dimension].append(RaterView(
            user_id=r.annotator_id, username=r.annotator.get_username(), ratings=r.ratings, bias=r.bias,
            bias_ci=(r.bias_ci_low, r.bias_ci_high), inconsistency=r.inconsistency,
            inconsistency_ci=(r.inconsistency_ci_low, r.inconsistency_ci_high), weight=r.weight,
            modelled=r.modelled, flag="rejected" if r.rejected else "down-weighted" if r.downweighted else "",
            drift=r.drift, drift_range=(max(biases) - min(biases)) if len(biases) >= 2 else None,
            ratings_url=rater_ratings_url(campaign_id=campaign.pk, annotator_id=r.annotator_id),
        ))
    dimensions = []
    for d in expected_dimensions(campaign.mode):
        raters = sorted(by_dim.get(d.index, []), key=lambda v: (v.flag == "", v.username))
        dimensions.append(RaterDimension(index=d.index, key=d.key, name=d.name, raters=raters,
                                         flagged=sum(1 for v in raters if v.flag)))
    # the overall score first: it is what every campaign rates
    dimensions.sort(key=lambda d: d.index != OVERALL.index)
    return CampaignRaters(
        method=campaign.consensus_method, method_name=ConsensusMethod(campaign.consensus_method).label,
        methods=list(ConsensusMethod.choices), stored_method=rows[0].method if rows else None,
        computed_at=rows[0].computed_at if rows else None, dimensions=dimensions, drift_block=DRIFT_BLOCK,
    )
