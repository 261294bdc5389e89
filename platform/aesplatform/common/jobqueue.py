"""Queue a background job after its row commits, or refuse the request clearly when the job queue is down.

Tasks live beside their apps (`aesplatform/<app>/tasks.py`), each declared with `shared_task(name=<its module
path>, queue=...)`. Services never import them (tasks import services, not the other way round): they queue a
task by its name through `task_send`, which publishes it on the queue the task declares (aesplatform.celery routes
every name to its task's own queue). Every service that starts a job (import, filter run, export, training,
pre-scoring) goes through `job_enqueue_on_commit` (common.jobs.job_enqueue: the job model names its task). With the
broker (Redis) unreachable:
- before anything is written: the check at call time raises JobQueueUnavailable inside the caller's transaction,
  which rolls back; the request gets a 503 with a message saying so, and nothing half-made stays behind;
- if the broker goes away between that check and the commit: the publish after the commit fails, the job row is
  marked failed with the reason by the caller's `on_failure` (it can be resumed or started again), and the request
  still gets the same 503.
Nothing here retries for long: a web request must answer, not hang while the queue is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

from .exceptions import ServiceError

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
UNAVAILABLE_MESSAGE = (
    "The job queue is unavailable, so the job could not be started; nothing was queued. "
    "Try again in a moment; an administrator may need to check the broker (Redis)."
)


class JobQueueUnavailable(ServiceError):
    """The broker cannot take the job (503: the same request may succeed later)."""

    status_code = 503
    code = "job_queue_unavailable"

    def __init__(self, message: str = UNAVAILABLE_MESSAGE, *, reason: str = "", committed: bool = False):
        super().__init__(message)
        self.reason = reason
        self.committed = committed  # True: the job row exists (marked failed); False: nothing was written


def broker_check(*, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise JobQueueUnavailable unless the broker accepts a connection now (one attempt, bounded in time)."""
    from aesplatform.celery import app

    if app.conf.task_always_eager:
        return
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker means the same to the caller
        logger.warning("job queue unavailable: %s", exc)
        raise JobQueueUnavailable(reason=str(exc)) from exc


def task_send(task_name: str, *args, **options) -> None:
    """Publish the task named `task_name` with `args` now, as the task declares it: on its queue, and without a
    result subscription when it ignores its result (a result backend that is down would hold the caller).

    `options` are Celery's publishing options (e.g. `countdown`). Raises whatever the broker raises, and LookupError
    for a name that is no task."""
    from aesplatform.celery import task_named

    task = task_named(task_name)
    if task is None:
        raise LookupError(f"no Celery task is named {task_name!r}")
    task.apply_async(args=args, **options)


def job_enqueue_on_commit(task_name: str, *args, on_failure: Callable[[str], None] | None = None) -> None:
    """Check the broker now (refusing inside the caller's transaction), then publish the task named `task_name`
    with `args` on commit (task_send).

    `on_failure(reason)` runs when the publish after the commit fails: it should mark the committed job row failed
    (or retryable) with the reason, in its own transaction. The caller then sees JobQueueUnavailable."""
    broker_check()

    def send() -> None:
        try:
            task_send(task_name, *args)
        except Exception as exc:  # noqa: BLE001 - reported as JobQueueUnavailable below
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("could not queue %s%r: %s", task_name, args, reason)
            if on_failure is not None:
                try:
                    on_failure(f"The job queue was unavailable when the job was queued ({reason}).")
                except Exception:  # noqa: BLE001 - the original problem is what the caller must hear about
                    logger.exception("could not record the queueing failure of %s%r", task_name, args)
            raise JobQueueUnavailable(reason=reason, committed=True) from exc

    transaction.on_commit(send)


def job_failed_unqueued(model, pk: int) -> Callable[[str], None]:
    """An `on_failure` for job rows with the common fields (state, error, finished_at): a still-pending job is
    marked failed with the reason (the apps' resume / start-again paths take it from there)."""

    def record(reason: str) -> None:
        from django.utils import timezone

        from .jobs import job_error_text
        from .models import JobState

        now = timezone.now()
        model.objects.filter(pk=pk, state=JobState.PENDING).update(
            state=JobState.FAILED, error=job_error_text(reason), finished_at=now, updated_at=now)

    return record


def task_former_names(task, *names: str) -> None:
    """Register `task` (a shared_task) under names an earlier release queued it by, on the same queue.

    Messages still waiting in the broker under an old name when a deployment is upgraded are then consumed by the
    new code instead of being rejected as unregistered. Nothing new is ever queued under these names."""
    from celery import shared_task

    for name in names:
        shared_task(name=name, queue=task.queue, ignore_result=task.ignore_result)(task.__wrapped__)
