"""One life cycle for every background job (import, filter run, export, training, pre-scoring).

The models inherit `aesplatform.common.models.Job`; the writes of that life cycle are here, and only here:

    pending --claim--> running --succeed/fail/cancelled--> succeeded | failed | cancelled
       ^                  |
       +--- sweep/resume--+   (no heartbeat for AESP_JOB_STALE_S: the worker died, or the message was lost)

- `job_running` (the worker side) claims a job with one guarded UPDATE (pending, or running with a stale
  heartbeat; never a job another live worker holds), so two deliveries of one message cannot both run it; the
  claim increments `attempts`, which is the worker's token: every later write of that worker (progress, succeed,
  fail) is guarded by it, so a worker that was given up on can no longer change the job. While the block runs, a
  small thread with its own database connection refreshes `heartbeat_at` every AESP_JOB_HEARTBEAT_S.
- `job_sweep` (celery beat, every AESP_JOB_SWEEP_S) re-queues what has shown no sign of life for
  AESP_JOB_STALE_S: running jobs whose worker died (kill -9, OOM, a lost machine) and pending jobs whose message
  was lost (the filesystem broker hands a message over before the task starts). The kinds resume idempotently
  (only what is left is done), so a second message is harmless: its claim finds the job taken and does nothing.
- `job_cancel` / `job_resume` are the user's (API and pages), with the same rules for every kind.
Errors are cut to ERROR_MAX_CHARS the same way everywhere (`job_error_text`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .exceptions import ConflictError
from .models import ACTIVE_JOB_STATES, FINISHED_JOB_STATES, Job, JobState

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 4000
_TRUNCATED = " [... cut ...] "


# --- settings and small reads ---------------------------------------------------------------------------------


def job_heartbeat_interval() -> float:
    return float(settings.AESP_JOB_HEARTBEAT_S)


def job_stale_after() -> float:
    return float(settings.AESP_JOB_STALE_S)


def job_error_text(error: object) -> str:
    """The stored text of a failure: at most ERROR_MAX_CHARS, keeping its start and its end (the exception's
    type and message come first, the innermost cause last)."""
    text = str(error or "").strip()
    if len(text) <= ERROR_MAX_CHARS:
        return text
    head = (ERROR_MAX_CHARS - len(_TRUNCATED)) * 3 // 4
    tail = ERROR_MAX_CHARS - len(_TRUNCATED) - head
    return text[:head] + _TRUNCATED + text[-tail:]


def _cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(seconds=job_stale_after())


def _stale_q(cutoff: datetime) -> Q:
    """No sign of life since `cutoff` (a row never marked falls back to its last update)."""
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, updated_at__lt=cutoff)


def job_is_stale(job: Job, *, now: datetime | None = None) -> bool:
    """A running job whose worker has not been heard of for AESP_JOB_STALE_S ("stalled, resuming")."""
    if job.state != JobState.RUNNING:
        return False
    last = job.heartbeat_at or job.updated_at
    return last is None or last < _cutoff(now)


def job_counts(job: Job) -> tuple[int, int] | None:
    """(done, total) of a job that counts its items (processed / total) or its steps (step / total_steps); None
    for a job that does not count."""
    for done_field, total_field in (("processed", "total"), ("step", "total_steps")):
        if hasattr(job, done_field) and hasattr(job, total_field):
            return int(getattr(job, done_field) or 0), int(getattr(job, total_field) or 0)
    return None


def job_eta_seconds(job: Job, *, now: datetime | None = None) -> float | None:
    """Seconds a running job still needs, from its progress and the time it has run: elapsed x left / done.
    A kind's own estimate (`eta_seconds`, e.g. training's) comes first. None, shown "not available", until it can
    be measured: the job is not running, has done nothing yet, or does not count its items."""
    if job.state != JobState.RUNNING:
        return None
    own = getattr(job, "eta_seconds", None)
    if own is not None:
        return max(0.0, float(own))
    counts = job_counts(job)
    if counts is None or job.started_at is None:
        return None
    done, total = counts
    elapsed = ((now or timezone.now()) - job.started_at).total_seconds()
    if done <= 0 or total <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (total - done) / done)


def job_models() -> list[type[Job]]:
    """Every concrete job model of the installed apps."""
    return [model for model in apps.get_models() if issubclass(model, Job)]


def _noun(model: type[Job]) -> str:
    return str(model._meta.verbose_name).capitalize()


# --- queueing -------------------------------------------------------------------------------------------------


def job_enqueue(*, job: Job) -> None:
    """Queue the job's task after the current transaction commits (a refusing broker: JobQueueUnavailable)."""
    from .jobqueue import job_enqueue_on_commit, job_failed_unqueued

    job_enqueue_on_commit(job.job_task_name(), job.pk, on_failure=job_failed_unqueued(type(job), job.pk))


# --- the worker side ------------------------------------------------------------------------------------------


def job_claim(*, model: type[Job], job_id: int) -> Job | None:
    """Take the job for this worker, or None when there is nothing to do (finished, cancelled, missing, or
    another live worker holds it). A job cancelled while it waited ends cancelled here."""
    now = timezone.now()
    claimable = Q(state=JobState.PENDING) | (Q(state=JobState.RUNNING) & _stale_q(_cutoff(now)))
    with transaction.atomic():
        rows = model.objects.filter(claimable, pk=job_id)
        claimed = rows.filter(cancel_requested=False).update(
            state=JobState.RUNNING, attempts=F("attempts") + 1, heartbeat_at=now,
            started_at=Coalesce(F("started_at"), Value(now)), finished_at=None, error="", updated_at=now)
        if not claimed:
            rows.filter(cancel_requested=True).update(state=JobState.CANCELLED, finished_at=now, updated_at=now)
            job = model.objects.filter(pk=job_id).first()
            logger.info("%s %s not claimed (%s)", _noun(model), job_id, job.state if job else "missing")
            return None
        job = model.objects.get(pk=job_id)
    logger.info("%s %s claimed (attempt %s)", _noun(model), job_id, job.attempts)
    return job


def _owned(job: Job):
    return type(job).objects.filter(pk=job.pk, state=JobState.RUNNING, attempts=job.attempts)


def job_heartbeat(*, job: Job) -> bool:
    """Mark the job alive; False when this worker no longer holds it (cancelled, or taken over)."""
    return bool(_owned(job).update(heartbeat_at=timezone.now()))


def job_progress(*, job: Job, alive: bool = True, **fields) -> bool:
    """Record the worker's progress (and a sign of life); False when this worker no longer holds the job.

    `alive=False`: a worker that helps with the job without holding it (aesplatform.common.chunks) records the
    progress it made under the holder's token but no sign of life: only the holder's heartbeat keeps the job from
    the sweep, so a job whose holder died is taken up again even while helpers are still at work."""
    now = timezone.now()
    beat = {"heartbeat_at": now} if alive else {}
    return bool(_owned(job).update(**fields, **beat, updated_at=now))


def job_should_stop(*, job: Job) -> bool:
    """True when the worker should stop at its next safe point: a cancel was asked for, or the job is not this
    worker's any more."""
    return not _owned(job).filter(cancel_requested=False).exists()


def job_succeed(*, job: Job, **fields) -> bool:
    now = timezone.now()
    done = bool(_owned(job).update(**fields, state=JobState.SUCCEEDED, error="", finished_at=now,
                                   heartbeat_at=now, updated_at=now))
    if done:
        logger.info("%s %s succeeded", _noun(type(job)), job.pk)
    return done


def job_fail(*, job: Job, error: object, **fields) -> bool:
    """End the worker's job failed with `error` (cut by job_error_text); it can be resumed."""
    now = timezone.now()
    text = job_error_text(error)
    done = bool(_owned(job).update(**fields, state=JobState.FAILED, error=text, finished_at=now, updated_at=now))
    if done:
        logger.warning("%s %s failed: %s", _noun(type(job)), job.pk, text[:500])
    return done


def job_cancelled(*, job: Job, **fields) -> bool:
    """The worker stopped on a cancel: the job ends cancelled."""
    now = timezone.now()
    return bool(_owned(job).update(**fields, state=JobState.CANCELLED, finished_at=now, updated_at=now))


def job_release(*, job: Job, error: object = "", retry_in_s: float = 0.0) -> bool:
    """Give the job back to the queue's next delivery (pending), keeping what it did: e.g. at a time limit.
    `error`: why, shown while it waits (e.g. the object store is unavailable); the next claim clears it.
    `retry_in_s`: the task queues itself again after this long; the sweep leaves the job alone until then (its
    sign of life is dated to that moment), so that no second message chases the delayed one."""
    now = timezone.now()
    return bool(_owned(job).update(state=JobState.PENDING, error=job_error_text(error),
                                   heartbeat_at=now + timedelta(seconds=max(0.0, retry_in_s)), updated_at=now))


def job_refresh(job: Job) -> Job:
    return type(job).objects.get(pk=job.pk)


class Beat(threading.Thread):
    """Calls `beat()` every `interval` seconds from its own database connection until stopped, or until `beat()`
    says False (the thing it keeps alive is no longer this worker's). A job's heartbeat; a chunk's lease."""

    def __init__(self, what: str, beat, interval: float) -> None:
        super().__init__(name=f"heartbeat-{what}", daemon=True)
        self.what = what
        self.beat = beat
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                try:
                    if not self.beat():
                        logger.info("%s: no longer held by this worker", self.what)
                        return
                except Exception:  # noqa: BLE001 - a missed beat is retried; the sweep waits several of them
                    logger.warning("heartbeat of %s failed", self.what, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def _job_beat(job: Job, interval: float) -> Beat:
    """Refreshes a running job's heartbeat until stopped."""
    return Beat(f"{_noun(type(job)).lower()} {job.pk}", lambda: job_heartbeat(job=job), interval)


@contextmanager
def job_running(*, model: type[Job], job_id: int) -> Iterator[Job | None]:
    """Claim the job and keep it alive while the block runs; yields None when there is nothing to do.

    The block ends the job with job_succeed / job_fail / job_cancelled. One that leaves it running (an
    exception it did not record) leaves it to the sweep, like a killed worker."""
    job = job_claim(model=model, job_id=job_id)
    if job is None:
        yield None
        return
    interval = job_heartbeat_interval()
    beat = _job_beat(job, interval) if interval > 0 else None
    if beat is not None:
        beat.start()
    try:
        yield job
    finally:
        if beat is not None:
            beat.stop()


# --- the user side --------------------------------------------------------------------------------------------


@transaction.atomic
def job_cancel(*, job: Job) -> Job:
    """Pending, or running with no worker alive: cancelled at once. Running: the worker stops at its next safe
    point and ends the job cancelled. A finished job: 409."""
    model = type(job)
    job = model.objects.select_for_update().get(pk=job.pk)
    if job.state in FINISHED_JOB_STATES:
        raise ConflictError(f"{_noun(model)} {job.pk} is {job.state}; only pending or running jobs can be cancelled.",
                            code="not_cancellable")
    job.cancel_requested = True
    fields = ["cancel_requested", "updated_at"]
    if job.state == JobState.PENDING or job_is_stale(job):
        job.state, job.finished_at = JobState.CANCELLED, timezone.now()
        fields += ["state", "finished_at"]
    job.save(update_fields=fields)
    return job


@transaction.atomic
def job_resume(*, job: Job) -> Job:
    """Queue a failed, stalled or still-pending job again; it does only what is left. Succeeded or cancelled: 409;
    running with a live worker: 409 (it is being done)."""
    model = type(job)
    job = model.objects.select_for_update().get(pk=job.pk)
    if job.state == JobState.SUCCEEDED:
        raise ConflictError(f"{_noun(model)} {job.pk} has already finished.", code="already_finished")
    if job.state == JobState.CANCELLED:
        raise ConflictError(f"{_noun(model)} {job.pk} was cancelled; there is nothing to resume.", code="cancelled")
    if job.state == JobState.RUNNING and not job_is_stale(job):
        raise ConflictError(f"{_noun(model)} {job.pk} is running; it can be resumed if it fails or stalls.",
                            code="already_running")
    job.state, job.error, job.finished_at, job.heartbeat_at = JobState.PENDING, "", None, timezone.now()
    job.cancel_requested = False  # a resume asked after a cancel (of a worker that then died) is the later wish
    job.save(update_fields=["state", "error", "finished_at", "heartbeat_at", "cancel_requested", "updated_at"])
    job_enqueue(job=job)
    return job


# --- the sweep ------------------------------------------------------------------------------------------------


def job_sweep() -> dict[str, list[int]]:
    """Re-queue every job that has shown no sign of life for AESP_JOB_STALE_S (celery beat runs this).

    Running ones go back to pending (cancelled, when a cancel was asked for), then to the queue. Pending ones are
    queued again when their message is evidently lost: none is waiting in their queue (a job merely waiting behind
    others is left alone). Each row is taken with a guarded UPDATE, so two sweeps at once queue it once."""
    from aesplatform.celery import app

    swept: dict[str, list[int]] = {}
    waiting: dict[str, int | None] = {}
    for model in job_models():
        now = timezone.now()
        stale = _stale_q(_cutoff(now))
        candidates = list(model.objects.filter(stale, state__in=ACTIVE_JOB_STATES).order_by("pk")
                          .values_list("pk", "state", "cancel_requested")[:1000])
        for job_id, state, cancel_requested in candidates:
            if state == JobState.PENDING and not cancel_requested:
                task_name = model.objects.select_related().get(pk=job_id).job_task_name()
                if _messages_waiting(app, task_name, waiting):
                    continue
            with transaction.atomic():
                rows = model.objects.filter(stale, pk=job_id, state__in=ACTIVE_JOB_STATES)
                if rows.filter(cancel_requested=True).update(state=JobState.CANCELLED, finished_at=now,
                                                               updated_at=now):
                    continue
                if not rows.update(state=JobState.PENDING, heartbeat_at=now, updated_at=now):
                    continue  # it came alive, finished, or another sweep took it
                task_name = model.objects.select_related().get(pk=job_id).job_task_name()
                transaction.on_commit(lambda name=task_name, pk=job_id: _send(app, name, pk))
            swept.setdefault(model._meta.label, []).append(job_id)
    if swept:
        logger.warning("job sweep re-queued jobs with no sign of life for %.0f s: %s", job_stale_after(), swept)
    return swept


def _messages_waiting(app, task_name: str, cache: dict[str, int | None]) -> int | None:
    """How many messages wait in the queue `task_name` is routed to (None: the broker could not say)."""
    queue = app.amqp.router.route({}, task_name)["queue"].name
    if queue not in cache:
        try:
            with app.connection_for_write() as connection:
                cache[queue] = connection.default_channel.queue_declare(queue=queue, passive=False).message_count
        except Exception:  # noqa: BLE001 - unknown: the job is queued again (a second message is harmless)
            logger.warning("job sweep could not count the messages of queue %s", queue, exc_info=True)
            cache[queue] = None
    return cache[queue]


def _send(app, task_name: str, job_id: int) -> None:
    from .jobqueue import task_send

    try:
        task_send(task_name, job_id)
    except Exception:  # noqa: BLE001 - the next sweep tries again (the row stays pending)
        logger.exception("job sweep could not queue %s(%s)", task_name, job_id)
