"""Writes of the annotation app: campaigns, task leases, annotations, consensus and agreement.

Task distribution
-----------------
`task_lease_next` runs in one transaction: (1) lazily expire leases whose time is up (the rows are taken with
SKIP LOCKED in id order, their tasks locked in id order, so concurrent callers never deadlock), (2) return the
annotator's own live lease if they hold one the client does not know of (a reload resumes the same image), (3)
walk the partial index `task_open_by_priority` for the first open task whose live leases + submissions are below
the campaign's redundancy and that this annotator never had, `FOR UPDATE SKIP LOCKED`, and lease it. The task's
counters change only under its row lock, and UNIQUE(task, annotator) holds in the database, so a task never gets
more than `redundancy` distinct annotators. On SQLite (no row locks) the settings open every transaction with
BEGIN IMMEDIATE: writers are serialized by the database, and the same code stays correct.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from aesplatform.accounts.roles import Role, user_has_role
from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.common.jobqueue import task_send
from aesplatform.common.text import name_list
from aesplatform.modeling import selectors as modeling_selectors
from model_core.standard import DIMENSIONS, OVERALL, ScoreError, validate_score

from . import agreement as agreement_math
from . import consensus as consensus_math
from . import hotpath, limits
from .models import (
    Agreement,
    Annotation,
    AnnotationReview,
    Assignment,
    AssignmentState,
    Campaign,
    CampaignMode,
    CampaignSnapshot,
    CampaignState,
    Consensus,
    ConsensusMethod,
    ConsensusOrigin,
    RaterStats,
    ReviewState,
    Task,
    TaskOrder,
    TaskState,
)

logger = logging.getLogger(__name__)
MAX_LIVE_LEASES = 2  # the task on screen and the one preloaded behind it
EXPIRE_BATCH = 200
ANNOTATION_FKS = ["task", "annotator", "assignment", "supersedes"]
FLAGS_TO_RETIRE = 2  # distinct annotators flagging an image as broken take it out of the campaign
CAMPAIGN_IMAGE_STATUSES = (ImageStatus.APPROVED, ImageStatus.IN_CAMPAIGN)
ALLOWED_TRANSITIONS = {
    CampaignState.DRAFT: {CampaignState.ACTIVE, CampaignState.CLOSED},
    CampaignState.ACTIVE: {CampaignState.CLOSED},
    CampaignState.CLOSED: {CampaignState.ACTIVE},
}


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


# --- campaigns --------------------------------------------------------------------------------------------------


def _check_annotators(annotators) -> list:
    users = list(annotators)
    not_annotators = [u.get_username() for u in users if not user_has_role(u, Role.ANNOTATOR)]
    if not_annotators:
        raise ServiceError(f"these users do not hold the annotator role: {name_list(sorted(not_annotators))}")
    return users


def _gold_candidates(*, image_ids: list[int], mode: str) -> set[int]:
    """Images with an imported reference label for what the campaign asks (the overall score, or all 12)."""
    needed = 1 if mode == CampaignMode.OVERALL else len(DIMENSIONS)
    rows = Consensus.objects.filter(image_id__in=image_ids, origin=ConsensusOrigin.IMPORTED)
    if mode == CampaignMode.OVERALL:
        rows = rows.filter(dimension=OVERALL.index)
    from django.db.models import Count

    return {
        image_id
        for image_id, n in rows.order_by().values_list("image_id").annotate(n=Count("dimension", distinct=True))
        if n >= needed
    }


def _priorities(*, image_ids: list[int], order: str, rng: random.Random) -> dict[int, float]:
    if order == TaskOrder.ACTIVE_LEARNING:
        # a promoted model that gives no uncertainty is refused (409), never read as "all equally certain"
        modeling_selectors.promoted_model_active_learning_check()
        return modeling_selectors.active_learning_priorities(image_ids=image_ids, seed=rng.randrange(2**31))
    return {i: rng.random() for i in image_ids}


@transaction.atomic
def campaign_create(
    *,
    name: str,
    mode: str,
    created_by,
    image_ids: list[int],
    redundancy: int = limits.REDUNDANCY_DEFAULT,
    gold_ratio: float = limits.GOLD_RATIO_DEFAULT,
    show_prescores: bool = False,
    instructions: str = "",
    annotators=(),
    task_order: str = TaskOrder.RANDOM,
    lease_seconds: int = limits.LEASE_SECONDS_DEFAULT,
    state: str = CampaignState.DRAFT,
    seed: int | None = None,
    consensus_method: str = consensus_math.DEFAULT_METHOD,
) -> Campaign:
    """A campaign over approved images, one task per image; a share `gold_ratio` of them are gold (unannounced)."""
    image_ids = sorted(set(image_ids))
    if not image_ids:
        raise ServiceError("a campaign needs at least one image")
    if state not in (CampaignState.DRAFT, CampaignState.ACTIVE):
        raise ServiceError("a new campaign is a draft or active")
    campaign = Campaign(
        name=name, mode=mode, redundancy=redundancy, gold_ratio=gold_ratio, show_prescores=show_prescores,
        instructions=instructions, task_order=task_order, lease_seconds=lease_seconds, state=state,
        created_by=created_by, consensus_method=consensus_method,
    )
    _check_consensus_method(consensus_method)
    campaign.full_clean()
    users = _check_annotators(annotators)

    images = Image.objects.filter(id__in=image_ids)
    found = dict(images.values_list("id", "status"))
    missing = [i for i in image_ids if i not in found]
    if missing:
        raise ServiceError(f"unknown images: {missing[:20]}")
    unusable = [i for i, status in found.items() if status not in CAMPAIGN_IMAGE_STATUSES]
    if unusable:
        raise ServiceError(f"only approved images can go into a campaign; not approved: {sorted(unusable)[:20]}")

    rng = random.Random(seed)
    gold_wanted = round(gold_ratio * len(image_ids))
    gold_ids: set[int] = set()
    if gold_wanted:
        candidates = sorted(_gold_candidates(image_ids=image_ids, mode=mode))
        if len(candidates) < gold_wanted:
            raise ServiceError(
                f"gold ratio {gold_ratio} needs {gold_wanted} images with an imported reference label; "
                f"the chosen images have {len(candidates)}"
            )
        gold_ids = set(rng.sample(candidates, gold_wanted))

    campaign.save()
    campaign.annotators.set(users)
    priorities = _priorities(image_ids=image_ids, order=task_order, rng=rng)
    Task.objects.bulk_create(
        [Task(campaign=campaign, image_id=i, is_gold=i in gold_ids, priority=priorities[i]) for i in image_ids],
        batch_size=5000,
    )
    Image.objects.filter(id__in=image_ids, status=ImageStatus.APPROVED).update(status=ImageStatus.IN_CAMPAIGN)
    campaign_snapshot_refresh(campaign=campaign)
    return campaign


def _check_consensus_method(method) -> None:
    if method not in ConsensusMethod.values:
        raise ServiceError(f"unknown consensus method {method!r}; expected one of {name_list(ConsensusMethod.values)}",
                           code="unknown_consensus_method")


@transaction.atomic
def campaign_update(*, campaign: Campaign, data: dict) -> Campaign:
    """Change settings, annotators, the consensus method (the consensus is then recomputed, after the commit) or
    the state (draft -> active -> closed -> active)."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    editable = {"name", "instructions", "show_prescores", "lease_seconds", "state", "consensus_method"}
    unknown = set(data) - editable - {"annotators"}
    if unknown:
        raise ServiceError(f"these fields cannot be changed: {name_list(sorted(unknown))}")
    new_state = data.get("state")
    if new_state is not None and new_state != campaign.state:
        if new_state not in ALLOWED_TRANSITIONS.get(campaign.state, set()):
            raise ConflictError(f"a {campaign.state} campaign cannot become {new_state}")
    method_changed = "consensus_method" in data and data["consensus_method"] != campaign.consensus_method
    if "consensus_method" in data:
        _check_consensus_method(data["consensus_method"])
    for key in editable & set(data):
        setattr(campaign, key, data[key])
    campaign.full_clean()
    campaign.save()
    if method_changed:
        consensus_recompute_queue(campaign_id=campaign.pk)
    live = Assignment.objects.filter(task__campaign=campaign, state=AssignmentState.LEASED)
    if "annotators" in data:
        annotators = _check_annotators(data["annotators"])
        campaign.annotators.set(annotators)
        # an annotator taken off the campaign can no longer submit what they held: their tasks go back to the others
        _leases_end(live.exclude(annotator__in=annotators))
    if new_state == CampaignState.CLOSED:
        _leases_end(live)  # live leases end with the campaign; their tasks stay as they are
    return campaign


def _leases_end(leased) -> None:
    """Expire these live leases now and give their tasks back. The assignment rows are locked first (then the tasks,
    in id order), so that a submit racing with this either comes first or finds the lease expired."""
    rows = list(leased.select_for_update(of=("self",)).values_list("id", "task_id"))
    if not rows:
        return
    Assignment.objects.filter(id__in=[a for a, _ in rows]).update(
        state=AssignmentState.EXPIRED, finished_at=timezone.now()
    )
    _release_leases([t for _, t in rows])


# --- leases -----------------------------------------------------------------------------------------------------


def _release_leases(task_ids: list[int]) -> None:
    """Decrement active_lease_count once per entry, locking the tasks in id order (no deadlock between callers)."""
    if not task_ids:
        return
    from collections import Counter

    counts = Counter(task_ids)
    list(Task.objects.select_for_update().filter(id__in=counts).order_by("id").values_list("id", flat=True))
    by_count: dict[int, list[int]] = {}
    for task_id, n in counts.items():
        by_count.setdefault(n, []).append(task_id)
    for n, ids in by_count.items():
        Task.objects.filter(id__in=ids, active_lease_count__gte=n).update(
            active_lease_count=F("active_lease_count") - n
        )


def leases_expire(*, now=None, limit: int = EXPIRE_BATCH) -> int:
    """Expire up to `limit` leases whose time is up and give their tasks back to the pool. Call inside atomic."""
    now = now or timezone.now()
    expired = hotpath.expired_leases_locked(now=now, limit=limit)  # FOR UPDATE SKIP LOCKED, in id order
    if not expired:
        return 0
    Assignment.objects.filter(id__in=[a for a, _ in expired]).update(state=AssignmentState.EXPIRED, finished_at=now)
    _release_leases([t for _, t in expired])
    return len(expired)


@dataclass(frozen=True)
class LeaseContext:
    """What selectors.campaign_for_lease read along with the campaign, in the same query (the next-task hot path),
    for one annotator at one moment: task_lease_next uses these answers instead of asking again.

    `live_lease_ids`: the annotator's live leases in the campaign at `read_at`, a superset of those live later
    (leases only end with time). `any_expired`: whether any lease (of any campaign) had run out at `read_at`.
    """

    campaign: Campaign
    annotator_id: int
    read_at: datetime
    member: bool
    live_lease_ids: tuple[int, ...]
    any_expired: bool


def _check_annotator_in(campaign: Campaign, annotator, read: LeaseContext | None) -> None:
    member = read.member if read is not None else campaign.annotators.filter(pk=annotator.pk).exists()
    if not member:
        # the answer for a campaign that does not exist: ids of campaigns one is not in are not confirmed
        raise NotFound("no such campaign")


def _check_active(campaign: Campaign) -> None:
    if campaign.state != CampaignState.ACTIVE:
        raise ConflictError(f"the campaign is {campaign.state}, not active", code="campaign_not_active")


def task_lease_next(
    *, campaign: Campaign, annotator, held: list[int] | tuple = (), now=None, read: LeaseContext | None = None
) -> Assignment | None:
    """Lease the next task of `campaign` to `annotator` (None when none is left for them).

    `held`: ids of this annotator's assignments the client already shows or preloads; a live lease of theirs
    outside that list is handed back first (a reload resumes), and an annotator holds at most MAX_LIVE_LEASES.

    `read`: what selectors.campaign_for_lease read with this campaign for this annotator (saves the membership,
    live-lease and expiry queries); without it they are asked here.

    Every write is atomic: the expiry sweep runs in a transaction of its own, and the lease itself is one statement
    on PostgreSQL (hotpath.task_lease_in_one_statement) or one transaction elsewhere.
    """
    now = now or timezone.now()
    if read is not None and (read.campaign.pk != campaign.pk or read.annotator_id != annotator.pk):
        raise ValueError("the lease context was read for another campaign or annotator")
    # Membership first: a non-member learns nothing of a campaign, not even that it is a draft or closed.
    _check_annotator_in(campaign, annotator, read)
    _check_active(campaign)
    if _leases_may_have_expired(read, now):
        with transaction.atomic():
            leases_expire(now=now)

    held_ids = {int(h) for h in held}
    # The caller's live leases as selectors.campaign_for_lease read them just before: a superset of those live now
    # (leases only end with time), so "nothing to resume, below the cap" holds now too. Anything else (a lease to
    # resume, the cap) is decided on a fresh read.
    live = list(read.live_lease_ids) if read is not None else None
    if live is not None and (len(live) >= MAX_LIVE_LEASES or any(i not in held_ids for i in live)):
        live = None
    if live is None:
        live = hotpath.live_lease_ids(campaign_id=campaign.pk, annotator_id=annotator.pk, now=now)
    for assignment_id in live:
        if assignment_id not in held_ids:
            # a reload resumes the same image (rare: read it with what the response needs)
            assignment = Assignment.objects.select_related("task__image").get(pk=assignment_id)
            assignment.task.campaign = campaign
            return assignment
    if len(live) >= MAX_LIVE_LEASES:
        raise ConflictError(
            f"you already hold {len(live)} leased tasks in this campaign; submit or skip one first",
            code="too_many_leases",
        )

    for attempt in range(1, LEASE_ATTEMPTS + 1):
        assignment = Assignment(
            annotator=annotator, state=AssignmentState.LEASED,
            leased_until=now + timedelta(seconds=campaign.lease_seconds),
        )
        assignment.leased_at = now
        try:
            if hotpath.writes_in_one_statement():
                leased = hotpath.task_lease_in_one_statement(
                    assignment=assignment, campaign_id=campaign.pk, redundancy=campaign.redundancy
                )
            else:
                leased = _task_lease_in_transaction(assignment=assignment, campaign=campaign)
        except IntegrityError as exc:
            # Another request of this annotator (a second tab, a retry) leased the same task and committed after
            # this statement's snapshot was taken but before it locked the task: the UNIQUE (task, annotator)
            # constraint refused the second lease and nothing was written. A new statement sees that lease.
            if attempt == LEASE_ATTEMPTS or not _is_duplicate_lease(exc):
                raise
            logger.info("lease of campaign %s for annotator %s lost a race to their own other request; retrying",
                        campaign.pk, annotator.pk)
            continue
        if leased or attempt == LEASE_ATTEMPTS or not hotpath.takeable_task_exists(
            campaign_id=campaign.pk, redundancy=campaign.redundancy, annotator_id=annotator.pk
        ):
            break
        # The lease skips rows other transactions hold, and every task left for this annotator was held for the
        # moment (someone's submit or lease of it: a statement, milliseconds). "Nothing left" would be wrong: the
        # page would tell the annotator the campaign is done while a task still waits for them.
        _pause_before_looking_again(attempt)
    if not leased:
        return None
    assignment.task.campaign = campaign  # the response is built from what is in memory, not read again
    return assignment


LEASE_ATTEMPTS = 4
LOCKED_TASK_PAUSE_S = 0.005


def _pause_before_looking_again(attempt: int) -> None:
    time.sleep(LOCKED_TASK_PAUSE_S * attempt)  # 5, 10, 15 ms: at most 30 ms in all, only when tasks were held
_DUPLICATE_LEASE_CONSTRAINT = "assignment_unique_annotator_per_task"


def _is_duplicate_lease(exc: IntegrityError) -> bool:
    """Whether the error is the UNIQUE (task, annotator) of assignments (PostgreSQL names it; SQLite lists columns)."""
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return diag.constraint_name == _DUPLICATE_LEASE_CONSTRAINT
    table = Assignment._meta.db_table
    return f"{table}.task_id, {table}.annotator_id" in str(exc)


# A sweep looks for leases that ran out; selectors.campaign_for_lease asks the same question (an index probe) along
# with the campaign, and the sweep is skipped when its answer was no and is still fresh.
EXPIRY_READ_FRESH_FOR = timedelta(seconds=1)


def _leases_may_have_expired(read: LeaseContext | None, now) -> bool:
    if read is None:
        return True
    return read.any_expired or not (read.read_at <= now < read.read_at + EXPIRY_READ_FRESH_FOR)


@transaction.atomic
def _task_lease_in_transaction(*, assignment: Assignment, campaign: Campaign) -> bool:
    # SELECT ... FOR UPDATE SKIP LOCKED over the partial index task_open_by_priority: the first open task whose
    # live leases + submissions are below the redundancy and that this annotator never had
    task = hotpath.next_task_locked(
        campaign_id=campaign.pk, redundancy=campaign.redundancy, annotator_id=assignment.annotator_id
    )
    if task is None:
        return False
    hotpath.task_lease_taken(task_id=task.pk)  # under the row lock just taken
    assignment.task = task
    hotpath.insert(assignment)
    return True


def _lock_own_assignment(*, assignment_id: int, annotator) -> Assignment:
    # SELECT ... FOR UPDATE OF the assignment, with its task and campaign
    assignment = hotpath.assignment_locked(assignment_id=assignment_id)
    if assignment is None:
        raise NotFound("no such task lease")
    if assignment.annotator_id != annotator.pk:
        raise NotFound("no such task lease")  # as for an id that does not exist: others' ids are not confirmed
    return assignment


def _check_live(assignment: Assignment, now) -> None:
    if assignment.state == AssignmentState.EXPIRED or (
        assignment.state == AssignmentState.LEASED and assignment.leased_until <= now
    ):
        raise ConflictError("the lease on this task has expired", code="lease_expired")
    if assignment.state != AssignmentState.LEASED:
        raise ConflictError(f"this task was already {assignment.state}", code=f"already_{assignment.state}")


def _finish(assignment: Assignment, state: str, now) -> None:
    hotpath.assignment_finished(assignment=assignment, state=state, now=now)


@transaction.atomic
def assignment_skip(*, assignment_id: int, annotator, now=None) -> Assignment:
    """Give the task back; this annotator will not be offered the image again in this campaign."""
    now = now or timezone.now()
    assignment = _lock_own_assignment(assignment_id=assignment_id, annotator=annotator)
    _check_live(assignment, now)
    _finish(assignment, AssignmentState.SKIPPED, now)
    _release_leases([assignment.task_id])
    return assignment


@transaction.atomic
def assignment_flag(*, assignment_id: int, annotator, reason: str = "", now=None) -> Assignment:
    """Report a broken image. FLAGS_TO_RETIRE distinct reports retire the task and mark the image broken."""
    now = now or timezone.now()
    assignment = _lock_own_assignment(assignment_id=assignment_id, annotator=annotator)
    _check_live(assignment, now)
    _finish(assignment, AssignmentState.FLAGGED, now)
    _release_leases([assignment.task_id])
    task = assignment.task
    flags = Assignment.objects.filter(task=task, state=AssignmentState.FLAGGED).count()
    if flags >= FLAGS_TO_RETIRE:
        Task.objects.filter(pk=task.pk).update(state=TaskState.DONE)
        Image.objects.filter(pk=task.image_id).update(status=ImageStatus.BROKEN)
    return assignment


# A skip or a flag can be undone for this long after it was made (the annotate page offers it for a few seconds; the
# margin covers an undo that waited on a flaky network). Later the task may be brought back to no one.
RESTORE_WINDOW = timedelta(minutes=10)
RESTORABLE_STATES = (AssignmentState.SKIPPED, AssignmentState.FLAGGED)


@transaction.atomic
def assignment_restore(*, assignment_id: int, annotator, now=None) -> Assignment:
    """Undo a skip or a flag: the task is leased again to the annotator who gave it up, with a fresh lease.

    Only one's own assignment, skipped or flagged less than RESTORE_WINDOW ago, in an active campaign one is still in,
    whose task is still open with room for one more annotator (nobody took the freed place, no flags retired it).
    Idempotent: an assignment that is already a live lease (a repeated undo) is returned as it is. The annotator may
    hold one lease above MAX_LIVE_LEASES for this: the page preloaded the next task while the undo was on offer.
    Anything else is a ConflictError naming why, and nothing changes.
    """
    now = now or timezone.now()
    assignment = _lock_own_assignment(assignment_id=assignment_id, annotator=annotator)  # NotFound for others' ids
    campaign = assignment.task.campaign
    if assignment.state == AssignmentState.LEASED and assignment.leased_until > now:
        return assignment  # already restored (or never released): the repeat of an undo changes nothing
    if assignment.state not in RESTORABLE_STATES:
        state = "expired" if assignment.state == AssignmentState.LEASED else assignment.state
        raise ConflictError(f"only a skipped or flagged task can be brought back; this one is {state}",
                            code="not_restorable")
    if assignment.finished_at is not None and assignment.finished_at + RESTORE_WINDOW < now:
        minutes = int(RESTORE_WINDOW.total_seconds() // 60)
        raise ConflictError(f"this task was {assignment.state} more than {minutes} minutes ago; it cannot be undone",
                            code="undo_too_late")
    _check_annotator_in(campaign, annotator, None)
    _check_active(campaign)
    task = Task.objects.select_for_update().get(pk=assignment.task_id)
    if task.state != TaskState.OPEN:
        raise ConflictError("this task is finished (enough ratings, or flagged as broken by others)",
                            code="task_closed")
    if task.active_lease_count + task.submitted_count >= campaign.redundancy:
        raise ConflictError("other annotators took this task meanwhile", code="task_taken")
    live = hotpath.live_lease_ids(campaign_id=campaign.pk, annotator_id=annotator.pk, now=now)
    if len(live) > MAX_LIVE_LEASES:
        raise ConflictError(f"you already hold {len(live)} leased tasks in this campaign; submit or skip one first",
                            code="too_many_leases")
    leased_until = now + timedelta(seconds=campaign.lease_seconds)
    Assignment.objects.filter(pk=assignment.pk).update(
        state=AssignmentState.LEASED, leased_until=leased_until, finished_at=None
    )
    hotpath.task_lease_taken(task_id=task.pk)  # under the row lock just taken
    assignment.state, assignment.leased_until, assignment.finished_at = AssignmentState.LEASED, leased_until, None
    return assignment


# --- annotations ------------------------------------------------------------------------------------------------


def expected_dimensions(mode: str) -> list:
    return list(DIMENSIONS) if mode == CampaignMode.EXPERT else [OVERALL]


def validate_scores(*, mode: str, scores) -> dict[str, float]:
    """Exactly the dimensions of the campaign's mode, each a number in [0, 1]."""
    if not isinstance(scores, dict):
        raise ServiceError("scores must be an object of dimension -> score", code="invalid_scores")
    expected = [d.key for d in expected_dimensions(mode)]
    known = {d.key for d in DIMENSIONS}
    unknown = sorted(set(scores) - known)
    if unknown:
        raise ServiceError(f"unknown dimensions: {name_list(unknown)}", code="unknown_dimension")
    extra = sorted(set(scores) - set(expected))
    if extra:
        raise ServiceError(
            f"a {mode} campaign takes only {', '.join(expected)}; not: {name_list(extra)}", code="wrong_mode_dimensions"
        )
    missing = [k for k in expected if k not in scores or scores[k] is None]
    if missing:
        raise ServiceError(f"missing dimensions: {', '.join(missing)}", code="missing_dimension")
    checked = {}
    for key in expected:
        try:
            checked[key] = validate_score(scores[key], what=key)
        except ScoreError as exc:
            raise ServiceError(str(exc), code="score_out_of_range") from None
    return checked


def _same_content(annotation: Annotation, scores: dict[str, float]) -> bool:
    stored = {k: v for k, v in annotation.scores_dict().items() if v is not None}
    return stored.keys() == scores.keys() and all(abs(stored[k] - scores[k]) < 1e-9 for k in scores)


def _replay(*, idempotency_key, annotator, scores: dict, assignment_id: int | None = None, supersedes_id=None):
    """The annotation already stored under this key when the request repeats it; 409 when it differs."""
    existing = Annotation.objects.filter(idempotency_key=idempotency_key).first()
    if existing is None:
        return None
    same = (
        existing.annotator_id == annotator.pk
        and (assignment_id is None or existing.assignment_id == assignment_id)
        and (supersedes_id is None or existing.supersedes_id == supersedes_id)
        and _same_content(existing, scores)
    )
    if not same:
        raise ConflictError(
            "this idempotency key was already used for a different annotation", code="idempotency_conflict"
        )
    return existing


# A burst of submits queues one recomputation per campaign and process every QUALITY_UPDATE_WINDOW_S seconds
# instead of one message per submit (a publish costs about 0.5 ms of CPU, as much as a third of a submit).
QUALITY_UPDATE_WINDOW_S = 2.0
QUALITY_UPDATE_MARGIN_S = 1.0  # tolerance for the worker's clock running ahead of this one
# With the job queue down a publish fails after ~0.6 s: a campaign's next attempt waits this long, so that submits
# stay fast while it is down.
QUALITY_UPDATE_RETRY_S = 10.0


class QualityUpdateWindows:
    """The consensus-update windows of one process: until when the update it last queued for a campaign covers
    that campaign's submits, and the campaigns owed an update (their publish failed; sent with the next that works).

    Per process on purpose: a window saves the publishes of this process's own submits (another process's submits
    open windows of their own: at most one more recomputation each, never one left out). The process owns the one
    instance, QUALITY_UPDATE_WINDOWS; `clock` (monotonic seconds) is what a test turns forward.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ends: dict[int, float] = {}
        self._owed: set[int] = set()

    def open(self, campaign_id: int) -> list[int] | None:
        """Open the campaign's next window and hand over the other campaigns owed an update (to be queued now
        with this one); None while its window is still open (nothing to queue)."""
        with self._lock:
            now = self._clock()
            if self._ends.get(campaign_id, 0.0) > now:
                return None
            self._ends[campaign_id] = now + QUALITY_UPDATE_WINDOW_S
            owed = sorted(self._owed - {campaign_id})
            self._owed.clear()
            return owed

    def publish_failed(self, campaign_id: int, owed: list[int]) -> None:
        """The job queue refused: the campaign tries again after QUALITY_UPDATE_RETRY_S, and every update is owed."""
        with self._lock:
            self._ends[campaign_id] = self._clock() + QUALITY_UPDATE_RETRY_S
            self._owed.update([campaign_id, *owed])

    @property
    def owed(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._owed)


QUALITY_UPDATE_WINDOWS = QualityUpdateWindows()

QUALITY_UPDATE_TASK = "aesplatform.annotation.tasks.campaign_quality_update"  # queued by name: tasks import services


def _queue_quality_update(campaign_id: int) -> None:
    """After the commit: queue a recomputation of the campaign's consensus, at most one per window.

    The first submit of a window queues the task to run after the window ends, stamped with the window's end;
    a submit inside the window committed before that and queues nothing: the recomputation starts later and
    sees it. consensus_update_if_stale skips the task only when a recomputation started after the window's end
    (which saw every annotation of the window too), so no annotation is left out of the consensus.

    The job queue being down never fails the submit (its annotation is committed already): the failure is logged
    and the campaign owed an update, which this process queues with the next publish that succeeds (a later
    submit); `consensus_catch_up` (run when a worker starts) recomputes campaigns rated since their last update.
    """

    def send():
        windows = QUALITY_UPDATE_WINDOWS
        owed = windows.open(campaign_id)
        if owed is None:
            return
        requested_at = timezone.now() + timedelta(seconds=QUALITY_UPDATE_WINDOW_S)
        for target in [campaign_id, *owed]:
            try:
                task_send(QUALITY_UPDATE_TASK, target, requested_at.isoformat(),
                          countdown=QUALITY_UPDATE_WINDOW_S + QUALITY_UPDATE_MARGIN_S)
            except Exception as exc:  # noqa: BLE001 - the broker is down: the annotation stays stored, the update owed
                windows.publish_failed(campaign_id, owed)
                logger.warning("consensus update of campaign %s not queued (job queue unavailable: %s); it is "
                               "queued with the next update that can be", target, exc)
                return

    transaction.on_commit(send)


def consensus_recompute_queue(*, campaign_id: int) -> None:
    """After the commit: queue a full recomputation of the campaign's consensus (a changed method). The task
    recomputes unless a recomputation started after this request (idempotent: the same data gives the same rows).
    With the job queue down, the campaign is owed an update (sent with the next publish that works, and by the
    worker's catch-up)."""
    def send() -> None:
        requested_at = timezone.now()
        try:
            task_send(QUALITY_UPDATE_TASK, campaign_id, requested_at.isoformat())
        except Exception as exc:  # noqa: BLE001 - the change is committed; the update is owed, not lost
            QUALITY_UPDATE_WINDOWS.publish_failed(campaign_id, [])
            logger.warning("consensus recomputation of campaign %s not queued (job queue unavailable: %s)",
                           campaign_id, exc)

    transaction.on_commit(send)


def consensus_catch_up() -> list[int]:
    """Queue a consensus update for every campaign with an annotation or a review newer than its last
    recomputation, or with consensus rows of another method than the campaign's (those whose update could not be
    queued while the job queue was down). Returns the campaign ids."""
    from django.db.models import Exists, Max, OuterRef, Q

    other_method = Consensus.objects.filter(campaign=OuterRef("pk"), origin=ConsensusOrigin.CAMPAIGN).exclude(
        method=OuterRef("consensus_method"))
    stale = list(
        Campaign.objects.annotate(last_annotation=Max("tasks__annotations__created_at"),
                                  last_review=Max("tasks__annotations__review__reviewed_at"),
                                  last_computed=Max("agreement__computed_at"), other_method=Exists(other_method))
        .filter(Q(last_computed__isnull=True) | Q(last_annotation__gt=F("last_computed"))
                | Q(last_review__gt=F("last_computed")) | Q(other_method=True)
                | Q(snapshot__stats__isnull=True), last_annotation__isnull=False)
        .values_list("pk", flat=True)
    )
    for campaign_id in stale:
        task_send(QUALITY_UPDATE_TASK, campaign_id, None)
    return stale


def _parse_key(idempotency_key) -> uuid.UUID:
    try:
        return uuid.UUID(str(idempotency_key))
    except (TypeError, ValueError):
        raise ServiceError("idempotency_key must be a UUID", code="invalid_idempotency_key") from None


def annotation_submit(
    *,
    assignment_id: int,
    annotator,
    scores: dict,
    idempotency_key,
    time_spent_ms: int = 0,
    ui_version: str = "",
    now=None,
) -> tuple[Annotation, bool]:
    """Store the annotation of a leased task once. Returns (annotation, created); a repeat returns the first."""
    key = _parse_key(idempotency_key)
    values = dict(annotator=annotator, scores=scores, key=key, time_spent_ms=time_spent_ms, ui_version=ui_version)
    try:
        if hotpath.writes_in_one_statement():
            stored = _annotation_submit_in_one_statement(assignment_id=assignment_id, now=now, **values)
            if stored is not None:
                return stored, True
        # anything but a live lease of this annotator (a replay, an error to explain) is decided under the lock
        return _annotation_submit(assignment_id=assignment_id, now=now, **values)
    except IntegrityError:
        # the key was used before (by another lease, or a concurrent request won the race): answer like a replay
        with transaction.atomic():
            existing = _replay(
                idempotency_key=key, annotator=annotator, scores=scores or {}, assignment_id=assignment_id
            )
        if existing is None:
            # a database constraint refused the row (the constraints, not Python checks, are the guarantee)
            raise ConflictError("the annotation conflicts with a stored one", code="annotation_conflict") from None
        return existing, False


def _annotation_submit_in_one_statement(*, assignment_id, annotator, scores, key, time_spent_ms, ui_version, now):
    """The common case, a live lease of this annotator, in one atomic statement with no read before it (hotpath:
    the lease finished, the task counted and the annotation inserted, each condition checked on the locked rows).
    The campaign's mode is taken from the scores (one score: overall; more: expert) and is one of the conditions.
    Returns None, having written nothing, for every other case: the locking path answers those, with the error
    for the campaign's real mode."""
    mode = CampaignMode.EXPERT if isinstance(scores, dict) and len(scores) > 1 else CampaignMode.OVERALL
    try:
        annotation = _annotation_checked(
            mode=mode, annotator=annotator, assignment_id=assignment_id, scores=scores, key=key,
            time_spent_ms=time_spent_ms, ui_version=ui_version,
        )
    except ServiceError:
        return None
    if not hotpath.annotation_submit_in_one_statement(annotation=annotation, mode=mode, now=now or timezone.now()):
        return None
    _queue_quality_update(annotation.task.campaign_id)
    return annotation


@transaction.atomic
def _annotation_submit(*, assignment_id, annotator, scores, key, time_spent_ms, ui_version, now):
    now = now or timezone.now()
    assignment = _lock_own_assignment(assignment_id=assignment_id, annotator=annotator)
    campaign = assignment.task.campaign
    if assignment.state != AssignmentState.LEASED:
        # only a finished lease can have an annotation: a repeated submit returns the first result. (A key that
        # another lease already used fails the INSERT below on its UNIQUE index and is answered in
        # annotation_submit.) The assignment row lock serializes concurrent submits of one lease.
        checked = validate_scores(mode=campaign.mode, scores=scores)
        existing = _replay(idempotency_key=key, annotator=annotator, scores=checked, assignment_id=assignment.pk)
        if existing is not None:
            return existing, False
    annotation = _new_annotation(
        assignment=assignment, annotator=annotator, scores=scores, key=key, time_spent_ms=time_spent_ms,
        ui_version=ui_version, now=now,
    )
    # The task's row is locked first (as before: task, then the annotation row that references it), by one UPDATE
    # that changes the counters atomically; the task is done once `redundancy` annotators submitted.
    hotpath.task_submitted(task_id=assignment.task_id, redundancy=campaign.redundancy)
    hotpath.insert(annotation)
    _finish(assignment, AssignmentState.SUBMITTED, now)
    _queue_quality_update(campaign.pk)
    return annotation, True


def _new_annotation(*, assignment: Assignment, annotator, scores, key, time_spent_ms, ui_version, now) -> Annotation:
    """The annotation a submit of `assignment` stores, checked (an active campaign, a live lease, the scores for the
    campaign's mode, the fields) but not saved."""
    campaign = assignment.task.campaign
    validate_scores(mode=campaign.mode, scores=scores)  # a malformed rating is explained first, whatever the lease
    _check_active(campaign)
    _check_live(assignment, now)
    annotation = _annotation_checked(
        mode=campaign.mode, annotator=annotator, assignment_id=assignment.pk, scores=scores, key=key,
        time_spent_ms=time_spent_ms, ui_version=ui_version,
    )
    annotation.task, annotation.assignment, annotation.campaign = assignment.task, assignment, campaign
    return annotation


def _annotation_checked(*, mode, annotator, assignment_id, scores, key, time_spent_ms, ui_version) -> Annotation:
    """A new annotation with the scores of `mode`, its fields checked; its task is set by the caller."""
    checked = validate_scores(mode=mode, scores=scores)
    if time_spent_ms is None or int(time_spent_ms) < 0:
        raise ServiceError("time_spent_ms must be a non-negative integer")
    annotation = Annotation(
        annotator=annotator, assignment_id=assignment_id, is_expert=mode == CampaignMode.EXPERT, idempotency_key=key,
        time_spent_ms=min(int(time_spent_ms), 2**31 - 1), ui_version=ui_version[:limits.UI_VERSION_MAX_LENGTH],
    )
    annotation.set_scores(checked)
    try:
        # The field checks (score validators, lengths) run here; the foreign keys and the CHECK / UNIQUE
        # constraints are enforced by the database on INSERT (validating them here would cost one query and one
        # savepoint each).
        annotation.full_clean(exclude=ANNOTATION_FKS, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise ServiceError(f"invalid annotation: {exc.messages}") from None
    return annotation


@transaction.atomic
def annotation_correct(
    *, annotation_id: int, annotator=None, reviewer=None, scores: dict, idempotency_key, time_spent_ms: int = 0,
    ui_version: str = "", reason: str = "",
) -> tuple[Annotation, bool]:
    """A correction: a new row that supersedes the current version of a rating (the history stays, rows never
    change). It keeps the rating's annotator; `corrected_by` and `correction_reason` say who made it and why.

    Exactly one of `annotator` (the annotator correcting their own rating: only while the campaign is active and
    lists them; others' ratings answer 404 as if they did not exist) and `reviewer` (a curator correcting anyone's
    rating, in an active or closed campaign; a reason is required). A repeat with the same idempotency key and
    content returns the first correction (created False)."""
    if (annotator is None) == (reviewer is None):
        raise ValueError("a correction is made by its annotator or by a reviewer, exactly one of them")
    actor = reviewer if reviewer is not None else annotator
    key = _parse_key(idempotency_key)
    reason = (reason or "").strip()
    try:
        original = Annotation.objects.select_for_update().select_related("task__campaign").get(pk=annotation_id)
    except Annotation.DoesNotExist:
        raise NotFound("no such annotation") from None
    campaign = original.task.campaign
    if reviewer is not None:
        _check_reviewer(reviewer)
        if not reason:
            raise ServiceError("a curator's correction needs a reason", code="reason_required")
    elif original.annotator_id != annotator.pk or not campaign.annotators.filter(pk=annotator.pk).exists():
        # an annotator taken off the campaign writes nothing more to it (a correction would count again)
        raise NotFound("no such annotation")
    if len(reason) > limits.REVIEW_REASON_MAX_LENGTH:
        raise ServiceError(f"the reason is longer than {limits.REVIEW_REASON_MAX_LENGTH} characters")
    checked = validate_scores(mode=campaign.mode, scores=scores)
    existing = _replay(idempotency_key=key, annotator=original.annotator, scores=checked, supersedes_id=original.pk)
    if existing is not None:
        if existing.corrected_by_id != actor.pk:
            raise ConflictError(
                "this idempotency key was already used for a different annotation", code="idempotency_conflict"
            )
        return existing, False
    if reviewer is None:
        _check_active(campaign)
    elif campaign.state == CampaignState.DRAFT:
        raise ConflictError("a draft campaign has no ratings to review", code="campaign_not_active")
    if Annotation.objects.filter(supersedes=original).exists():
        raise ConflictError(
            "this annotation was already corrected; correct the newest version", code="already_superseded"
        )
    correction = Annotation(
        task=original.task, annotator_id=original.annotator_id, assignment=original.assignment,
        is_expert=original.is_expert, supersedes=original, idempotency_key=key,
        time_spent_ms=max(int(time_spent_ms), 0), ui_version=ui_version[:limits.UI_VERSION_MAX_LENGTH],
        corrected_by=actor, correction_reason=reason,
    )
    correction.set_scores(checked)
    correction.full_clean(validate_unique=False)
    correction.save(force_insert=True)
    _queue_quality_update(campaign.pk)
    return correction, True


# --- review of ratings by curators -------------------------------------------------------------------------------


def _check_reviewer(user) -> None:
    if not user_has_role(user, Role.CURATOR):
        raise ServiceError("reviewing ratings needs the curator role", code="permission_denied", status_code=403)


def rating_original(annotation: Annotation) -> Annotation:
    """The first row of a rating's chain (where its review lives): the one original per (task, annotator)."""
    if annotation.supersedes_id is None:
        return annotation
    return Annotation.objects.get(task_id=annotation.task_id, annotator_id=annotation.annotator_id,
                                  supersedes__isnull=True)


def _current_for_review(*, annotation_id: int, reviewer) -> tuple[Annotation, Annotation]:
    """The rating version the reviewer saw (locked), checked to be the current one, and the chain's original."""
    _check_reviewer(reviewer)
    try:
        version = Annotation.objects.select_for_update().select_related("task__campaign").get(pk=annotation_id)
    except Annotation.DoesNotExist:
        raise NotFound("no such annotation") from None
    if Annotation.objects.filter(supersedes=version).exists():
        raise ConflictError("this rating was corrected since; review its newest version", code="already_superseded")
    return version, rating_original(version)


def _review_set(*, original: Annotation, version: Annotation, state: str, reason: str, reviewer,
                now) -> tuple[AnnotationReview, bool]:
    """Write the rating's one review row; (review, changed). The same verdict on the same version changes nothing."""
    review = AnnotationReview.objects.select_for_update().filter(annotation=original).first()
    if review is not None and (review.version_id, review.state, review.reason) == (version.pk, state, reason):
        return review, False
    was_rejected = review is not None and review.state == ReviewState.REJECTED
    if review is None:
        review = AnnotationReview(annotation=original)
    review.version, review.state, review.reason = version, state, reason
    review.reviewed_by, review.reviewed_at = reviewer, now
    try:
        review.full_clean(validate_unique=False)
    except ValidationError as exc:
        raise ServiceError(f"invalid review: {exc.messages}") from None
    review.save()
    if was_rejected != (state == ReviewState.REJECTED):
        _queue_quality_update(version.task.campaign_id)  # the rating leaves or re-enters the consensus
    return review, True


@transaction.atomic
def annotation_review(
    *, annotation_id: int, reviewer, state: str, reason: str = "", now=None
) -> tuple[AnnotationReview, bool]:
    """A curator's verdict on the current version of a rating: accepted, or rejected (a reason is required; the
    rating is left out of the consensus, which is recomputed, until a curator accepts it again). Returns (review,
    changed): the same verdict again changes nothing (changed False)."""
    if state not in (ReviewState.ACCEPTED, ReviewState.REJECTED):
        raise ServiceError("a review accepts or rejects a rating (a correction goes through "
                           "annotation_review_correct)", code="invalid_review_state")
    reason = (reason or "").strip()
    if state == ReviewState.REJECTED and not reason:
        raise ServiceError("a rejection needs a reason", code="reason_required")
    version, original = _current_for_review(annotation_id=annotation_id, reviewer=reviewer)
    if version.task.campaign.state == CampaignState.DRAFT:
        raise ConflictError("a draft campaign has no ratings to review", code="campaign_not_active")
    return _review_set(original=original, version=version, state=state, reason=reason, reviewer=reviewer,
                       now=now or timezone.now())


@transaction.atomic
def annotation_review_correct(
    *, annotation_id: int, reviewer, scores: dict, reason: str, idempotency_key, now=None
) -> tuple[Annotation, AnnotationReview, bool]:
    """A curator corrects the current version of a rating: annotation_correct stores the new revision (the
    original kept, who/when/why recorded) and the review says "corrected" (a rejected rating counts again).
    Returns (correction, review, created); a repeat with the same key returns the first correction."""
    _check_reviewer(reviewer)
    key = _parse_key(idempotency_key)
    if Annotation.objects.filter(idempotency_key=key, supersedes_id=annotation_id).exists():
        # a retry of a correction that was stored: annotation_correct answers it (the same one, or a 409)
        correction, _ = annotation_correct(annotation_id=annotation_id, reviewer=reviewer, scores=scores,
                                           idempotency_key=key, reason=reason)
        return correction, AnnotationReview.objects.get(annotation=rating_original(correction)), False
    version, original = _current_for_review(annotation_id=annotation_id, reviewer=reviewer)
    correction, created = annotation_correct(annotation_id=version.pk, reviewer=reviewer, scores=scores,
                                             idempotency_key=key, reason=reason)
    review, _ = _review_set(original=original, version=correction, state=ReviewState.CORRECTED,
                            reason=correction.correction_reason, reviewer=reviewer, now=now or timezone.now())
    return correction, review, created


# --- consensus and agreement -------------------------------------------------------------------------------------


def current_annotations(*, campaign: Campaign):
    """The newest version of every annotator's annotation of every task (superseded rows left out), without the
    ratings a curator rejected (their review row hangs on the chain's original: same task and annotator).

    The rejected ratings are few (a curator's decision each): they are looked up first and left out by id, which
    keeps the query a plain scan (a correlated NOT EXISTS made the planner loop over the campaign's annotations
    once per row: seconds for a few thousand ratings)."""
    current = Annotation.objects.filter(task__campaign=campaign, superseded_by__isnull=True)
    rejected = set(
        AnnotationReview.objects.filter(annotation__task__campaign=campaign, state=ReviewState.REJECTED)
        .values_list("annotation__task_id", "annotation__annotator_id")
    )
    if not rejected:
        return current
    rejected_ids = [
        pk for pk, task_id, annotator_id in current.filter(task_id__in={t for t, _ in rejected})
        .values_list("pk", "task_id", "annotator_id")
        if (task_id, annotator_id) in rejected
    ]
    return current.exclude(pk__in=rejected_ids)


def campaign_matrices(*, campaign: Campaign, with_times: bool = False) -> dict:
    """Ratings matrices (images x annotators) per dimension of the campaign's mode, with row/column ids; with
    `with_times`, also "times": when each rating was made (epoch seconds, NaN where none)."""
    dims = expected_dimensions(campaign.mode)
    extra = ["created_at"] if with_times else []
    rows = list(
        current_annotations(campaign=campaign).values_list(
            "task__image_id", "annotator_id", *extra, *[d.key for d in dims]
        )
    )
    image_ids = sorted({r[0] for r in rows})
    annotator_ids = sorted({r[1] for r in rows})
    image_pos = {v: i for i, v in enumerate(image_ids)}
    annotator_pos = {v: i for i, v in enumerate(annotator_ids)}
    matrices = {d.index: np.full((len(image_ids), len(annotator_ids)), np.nan) for d in dims}
    times = np.full((len(image_ids), len(annotator_ids)), np.nan)
    first = 2 + len(extra)
    for row in rows:
        i, j = image_pos[row[0]], annotator_pos[row[1]]
        if with_times:
            times[i, j] = row[2].timestamp()
        for d, value in zip(dims, row[first:]):
            if value is not None:
                matrices[d.index][i, j] = value
    data = {"image_ids": image_ids, "annotator_ids": annotator_ids, "matrices": matrices}
    if with_times:
        data["times"] = times
    return data


def _f(value) -> float | None:
    return agreement_math.finite_or_none(value)


DRIFT_BLOCK = 50  # ratings per point of a rater's drift


def rater_drift(*, ratings: np.ndarray, consensus: np.ndarray, times: np.ndarray, block: int = DRIFT_BLOCK) -> list:
    """One rater's bias over time: their ratings in the order they were made, cut into blocks of `block`; per block
    the mean of (rating - the image's consensus), its size and its first and last time (ISO 8601)."""
    rated = ~np.isnan(ratings) & ~np.isnan(consensus)
    order = np.argsort(times[rated], kind="stable")
    deviation = (ratings[rated] - consensus[rated])[order]
    when = times[rated][order]
    points = []
    for start in range(0, deviation.size, block):
        part = slice(start, start + block)
        points.append({
            "start": datetime.fromtimestamp(when[part][0], tz=UTC).isoformat(),
            "end": datetime.fromtimestamp(when[part][-1], tz=UTC).isoformat(),
            "n": int(deviation[part].size), "bias": round(float(deviation[part].mean()), 4),
        })
    return points


@transaction.atomic
def consensus_update_for_campaign(*, campaign: Campaign) -> dict:
    """Recompute the consensus of every rated image by the campaign's consensus method, the raters' estimates and
    drift (RaterStats) and the agreement of every dimension. Idempotent: the same annotations and method give the
    same rows (a changed method rewrites every row; the annotations, the source of it all, never change)."""
    started = timezone.now()
    method = campaign.consensus_method
    data = campaign_matrices(campaign=campaign, with_times=True)
    image_ids, annotator_ids = data["image_ids"], data["annotator_ids"]
    written = 0
    stats_rows = []
    for dimension, matrix in data["matrices"].items():
        result = consensus_math.consensus(matrix, method)
        existing = {
            c.image_id: c
            for c in Consensus.objects.select_for_update().filter(
                campaign=campaign, origin=ConsensusOrigin.CAMPAIGN, dimension=dimension
            )
        }
        to_create, to_update = [], []
        for i, image_id in enumerate(image_ids):
            if not np.isfinite(result.mos[i]):
                continue
            values = dict(
                score=float(np.clip(result.mos[i], 0.0, 1.0)), count=int(result.count[i]), std=_f(result.std[i]),
                ci_low=_f(result.ci_low[i]), ci_high=_f(result.ci_high[i]),
                rejected_annotators=int(result.rejected_per_image[i]), method=result.method,
            )
            row = existing.pop(image_id, None)
            if row is None:
                to_create.append(Consensus(image_id=image_id, dimension=dimension, origin=ConsensusOrigin.CAMPAIGN,
                                           campaign=campaign, **values))
            else:
                for k, v in values.items():
                    setattr(row, k, v)
                to_update.append(row)
        Consensus.objects.bulk_create(to_create, batch_size=2000)
        Consensus.objects.bulk_update(
            to_update, ["score", "count", "std", "ci_low", "ci_high", "rejected_annotators", "method", "updated_at"],
            batch_size=2000,
        )
        if existing:  # images whose every annotation went away (cannot happen with immutable rows, but stay exact)
            Consensus.objects.filter(pk__in=[c.pk for c in existing.values()]).delete()
        written += len(to_create) + len(to_update)

        r = result.raters
        for j, annotator_id in enumerate(annotator_ids):
            if not r.count[j]:
                continue
            stats_rows.append(RaterStats(
                campaign=campaign, annotator_id=annotator_id, dimension=dimension, method=result.method,
                ratings=int(r.count[j]), bias=_f(r.bias[j]), bias_ci_low=_f(r.bias_ci_low[j]),
                bias_ci_high=_f(r.bias_ci_high[j]), inconsistency=_f(r.inconsistency[j]),
                inconsistency_ci_low=_f(r.inconsistency_ci_low[j]),
                inconsistency_ci_high=_f(r.inconsistency_ci_high[j]), weight=_f(r.weight[j]),
                modelled=bool(r.modelled[j]), rejected=bool(r.rejected[j]), downweighted=bool(r.downweighted[j]),
                drift=rater_drift(ratings=matrix[:, j], consensus=result.mos, times=data["times"][:, j]),
                computed_at=started,
            ))

        icc = agreement_math.icc_oneway(matrix)
        Agreement.objects.update_or_create(
            campaign=campaign, dimension=dimension,
            defaults=dict(
                krippendorff_alpha=_f(agreement_math.krippendorff_alpha_interval(matrix)), icc=_f(icc.icc1),
                items=icc.items, annotations=int((~np.isnan(matrix)).sum()),
            ),
        )
    # the raters' estimates are replaced as a whole (a few rows per rater and dimension)
    RaterStats.objects.filter(campaign=campaign).delete()
    RaterStats.objects.bulk_create(stats_rows, batch_size=2000)
    # computed_at is when the reading began: a submit committed after it asks for another recomputation
    Agreement.objects.filter(campaign=campaign).update(computed_at=started)
    review_deviations_store(campaign=campaign)
    campaign_snapshot_refresh(campaign=campaign, at=started)
    return {"images": len(image_ids), "consensus_rows": written, "rater_rows": len(stats_rows), "method": method}


def review_deviations_store(*, campaign: Campaign) -> int:
    """Store on every current rating of the campaign (rejected ones included) its largest |score - consensus| over
    the dimensions it rated that have a consensus (NULL: none), from the campaign's stored consensus rows, in one
    UPDATE (the database does the arithmetic: the same doubles as selectors.ReviewEntry.deviation). Rows whose
    value is unchanged are not written. Returns how many were written."""
    qn = connection.ops.quote_name
    annotation, task, consensus = (qn(m._meta.db_table) for m in (Annotation, Task, Consensus))
    column = {d.index: qn(Annotation._meta.get_field(d.key).column) for d in DIMENSIONS}
    rated = " ".join(f"WHEN {index} THEN a2.{name}" for index, name in column.items())
    distinct = "IS NOT" if connection.vendor == "sqlite" else "IS DISTINCT FROM"  # NULL-safe "differs"
    sql = f"""
        UPDATE {annotation} AS a SET review_deviation = d.deviation
        FROM (
            SELECT a2.id, MAX(ABS((CASE c.dimension {rated} END) - c.score)) AS deviation
            FROM {annotation} AS a2
            JOIN {task} AS t ON t.id = a2.task_id
            LEFT JOIN {consensus} AS c
                ON c.campaign_id = t.campaign_id AND c.image_id = t.image_id AND c.origin = %s
            WHERE a2.campaign_id = %s
              AND NOT EXISTS (SELECT 1 FROM {annotation} AS s WHERE s.supersedes_id = a2.id)
            GROUP BY a2.id
        ) AS d
        WHERE a.id = d.id AND a.review_deviation {distinct} d.deviation
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [ConsensusOrigin.CAMPAIGN, campaign.pk])
        return cursor.rowcount


def campaign_snapshot_refresh(*, campaign: Campaign, at=None) -> CampaignSnapshot:
    """Compute and store the campaign's counts and dashboard statistics (CampaignSnapshot), as of `at` (default:
    now, taken before reading). Run by the worker's quality update after submits, and by campaign_create."""
    from . import selectors

    at = at or timezone.now()
    counts = selectors.campaign_counts(campaign_ids=[campaign.pk])[campaign.pk]
    stats = selectors.campaign_stats(campaign=campaign)
    snapshot, _ = CampaignSnapshot.objects.update_or_create(
        campaign=campaign, defaults=dict(counts, stats=selectors.campaign_stats_payload(stats), computed_at=at)
    )
    return snapshot


def campaign_snapshots_fill(*, campaign_ids) -> dict[int, CampaignSnapshot]:
    """The counts of campaigns that have no snapshot yet (made before snapshots existed), computed and stored in
    a fixed number of statements whatever their number (their dashboard statistics stay to the worker)."""
    from . import selectors

    at = timezone.now()
    rows = [CampaignSnapshot(campaign_id=i, computed_at=at, stats=None, **counts)
            for i, counts in selectors.campaign_counts(campaign_ids=campaign_ids).items()]
    CampaignSnapshot.objects.bulk_create(rows, ignore_conflicts=True)
    return {row.campaign_id: row for row in rows}


def consensus_update_if_stale(*, campaign_id: int, requested_at) -> bool:
    """What the worker runs after a submit: skip when a recomputation already ran after the request."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return False
    last = (
        Agreement.objects.filter(campaign=campaign).order_by("-computed_at")
        .values_list("computed_at", flat=True).first()
    )
    if last is not None and requested_at is not None and last > requested_at:
        return False
    consensus_update_for_campaign(campaign=campaign)
    return True


def user_by_ids(ids):
    return get_user_model().objects.filter(id__in=ids)


# --- the other apps' writes of annotation rows ---------------------------------------------------------------


@dataclass(frozen=True)
class ImportedLabel:
    """One dimension's score of an image as an imported dataset gave it (catalog imports)."""

    image_id: int
    dimension: str
    score: float
    label_source: str = ""


def consensus_imported_add(*, labels: Iterable[ImportedLabel], method: str) -> None:
    """Store imported labels as consensus rows (origin "imported", no campaign). One imported row per (image,
    dimension): a label already there (the same photo in 58K and 50K, a re-import) is kept, not overwritten."""
    rows = [
        Consensus(image_id=label.image_id, dimension=label.dimension, origin=ConsensusOrigin.IMPORTED, campaign=None,
                  label_source=label.label_source[:200], method=method, score=label.score, count=1)
        for label in labels
    ]
    if rows:
        Consensus.objects.bulk_create(rows, ignore_conflicts=True)


def task_priorities_reorder(*, campaign: Campaign, priorities: Callable[[list[int]], dict[int, float]]) -> int:
    """Rewrite the priority of the campaign's open tasks (higher is leased first): `priorities(image_ids)` maps
    each open task's image to its new priority. Tasks another transaction holds are left for the next reorder.
    Returns how many tasks were reordered."""
    with transaction.atomic():
        tasks = list(Task.objects.select_for_update(skip_locked=True).filter(campaign=campaign, state=TaskState.OPEN)
                     .only("id", "image_id", "priority"))
        if not tasks:
            return 0
        by_image = priorities([t.image_id for t in tasks])
        for task in tasks:
            task.priority = by_image[task.image_id]
        Task.objects.bulk_update(tasks, ["priority"], batch_size=2000)
    return len(tasks)
