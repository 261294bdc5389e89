"""One run shared by several workers: its items cut into chunks that workers claim, lease and finish.

A filter run or a pre-scoring run is one job (aesplatform.common.jobs): one worker claims it and holds it (the
holder). The holder cuts what is left into chunks (rows of a concrete `WorkChunk` model: a range of keys, aligned
to the run's model batches so that every item is scored in the same batch whichever worker takes its chunk) and
asks up to AESP_RUN_HELPERS other workers to help (the app sends its "assist" task, on the run's queue). Every
worker, the holder too, then loops: claim the next free chunk, score it, finish it.

- Claim: the first chunk (by index) that is pending, or leased with a lease that ran out (its worker died), is taken
  with a guarded UPDATE that increments `attempts`, the holder's token; PostgreSQL first locks the candidate with
  FOR UPDATE SKIP LOCKED, so that workers claiming at once take different chunks without waiting on each other.
  SQLite (`make run`) has no SKIP LOCKED but serializes writers: the guarded UPDATE alone hands a chunk to one
  claimant, and a claimant that lost the race takes the next.
- Lease: until `lease_until` = now + AESP_JOB_STALE_S, renewed every AESP_JOB_HEARTBEAT_S by a thread (as a job's
  heartbeat) and by each write of scores. Times are the database's clock (workers on other hosts may disagree).
- Scores are written under the lease: `chunk_scored_add` (in the app's write transaction) counts the items and
  fails when the chunk is no longer this worker's (its lease ran out and another worker took it over): the app
  then rolls its write back and leaves the chunk, so an item's scores are written by one worker.
- A helper that finds nothing to claim ends at once. The holder, when nothing is claimable, waits for the chunks
  others hold (or takes them over when their lease runs out), then checks that nothing is left (items that came
  in after the split get new chunks) and finalizes the run, once (the job's own guards).
- Cancel: each worker stops after its current batch and gives its chunk back (pending), so a resume goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, DateTimeField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Now

from .jobs import Beat, job_heartbeat_interval, job_stale_after
from .models import ChunkState, Job, WorkChunk

logger = logging.getLogger(__name__)

POLL_S = 0.5  # how often the holder looks again while other workers finish their chunks


class LeaseLost(Exception):
    """The chunk is no longer this worker's (its lease ran out and another worker took it over)."""


def run_helpers() -> int:
    """How many other workers a run asks to help (AESP_RUN_HELPERS; 0: the holder scores all of it)."""
    return max(0, int(settings.AESP_RUN_HELPERS))


def run_chunk_size() -> int:
    """Items per chunk before aligning to whole batches (AESP_RUN_CHUNK_SIZE)."""
    return max(1, int(settings.AESP_RUN_CHUNK_SIZE))


def worker_name(node: str = "") -> str:
    """Who holds a chunk: the Celery node name (or the host's name) and the process id."""
    return f"{node or socket.gethostname()}:{os.getpid()}"[:200]


def chunk_bounds(keys: Iterable[int], *, size: int) -> list[tuple[int, int, int]]:
    """(first key, last key, items) of consecutive groups of `size` keys, read in ascending order (a stream: the
    keys of a run of millions are never all in memory)."""
    bounds: list[tuple[int, int, int]] = []
    first = last = None
    count = 0
    for key in keys:
        if last is not None and key <= last:
            raise ValueError("chunk keys must come in ascending order")
        if count == 0:
            first = key
        last, count = key, count + 1
        if count == size:
            bounds.append((first, last, count))
            count = 0
    if count:
        bounds.append((first, last, count))
    return bounds


def chunk_size_aligned(unit: int) -> int:
    """AESP_RUN_CHUNK_SIZE rounded up to a whole number of `unit` (a model batch, or a scoring call)."""
    unit = max(1, int(unit))
    return max(1, -(-run_chunk_size() // unit)) * unit


def helpers_ask(*, job: Job, added: int) -> int:
    """Ask up to AESP_RUN_HELPERS idle workers (the job's assist task, on its queue) to score chunks beside the
    holder, now that `added` chunks are committed (one chunk needs no help); how many were asked."""
    from .jobqueue import task_send

    asked = 0
    for _ in range(min(run_helpers(), added - 1)):
        try:
            task_send(job.assist_task_name(), job.pk)
        except Exception:  # noqa: BLE001 - the holder scores every chunk itself if nobody helps
            logger.warning("run %s: could not ask for a helper", job.pk, exc_info=True)
            break
        asked += 1
    if asked:
        logger.info("run %s: %s helper(s) asked", job.pk, asked)
    return asked


def _of(model: type[WorkChunk], job: Job):
    return model.objects.filter(run_id=job.pk)


def _lease_end():
    return ExpressionWrapper(Now() + Value(timedelta(seconds=job_stale_after())), output_field=DateTimeField())


def _claimable() -> Q:
    return Q(state=ChunkState.PENDING) | Q(state=ChunkState.LEASED, lease_until__lt=Now())


@transaction.atomic
def chunks_create(*, model: type[WorkChunk], job: Job, bounds: Sequence[tuple[int, int, int]]) -> int:
    """Add chunks (after the run's existing ones) for `bounds`; how many were added."""
    last = _of(model, job).order_by("-index").values_list("index", flat=True).first()
    start = 0 if last is None else last + 1
    rows = [model(run_id=job.pk, index=start + i, first_key=first, last_key=last, size=size)
            for i, (first, last, size) in enumerate(bounds)]
    for row in rows:
        row.full_clean(exclude=["run"])
    model.objects.bulk_create(rows)
    return len(rows)


def chunk_claim(*, model: type[WorkChunk], job: Job, worker: str) -> WorkChunk | None:
    """Take the run's next free chunk (pending, or its lease ran out) for `worker`; None when there is none."""
    while True:
        with transaction.atomic():
            candidates = _of(model, job).filter(_claimable()).order_by("index")
            if connection.features.has_select_for_update_skip_locked:
                candidates = candidates.select_for_update(skip_locked=True)
            pk = candidates.values_list("pk", flat=True).first()
            if pk is None:
                return None
            taken = model.objects.filter(_claimable(), pk=pk).update(
                state=ChunkState.LEASED, leased_by=worker, lease_until=_lease_end(), attempts=F("attempts") + 1)
            if taken:
                chunk = model.objects.get(pk=pk)
                if chunk.attempts > 1:
                    logger.info("chunk %s of run %s taken over by %s (attempt %s)", chunk.index, job.pk, worker,
                                chunk.attempts)
                return chunk
        # another worker took that candidate between the read and the update (SQLite): try the next one


def chunks_claimable(*, model: type[WorkChunk], job: Job) -> bool:
    return _of(model, job).filter(_claimable()).exists()


def _held(chunk: WorkChunk):
    return type(chunk).objects.filter(pk=chunk.pk, state=ChunkState.LEASED, attempts=chunk.attempts)


def chunk_renew(*, chunk: WorkChunk) -> bool:
    """Extend the lease; False when the chunk is no longer this worker's."""
    return bool(_held(chunk).update(lease_until=_lease_end()))


def chunk_scored_add(*, chunk: WorkChunk, items: int, seconds: float) -> None:
    """Count `items` scored under the chunk (and renew its lease), inside the transaction that writes their scores.
    Raises LeaseLost when the chunk is no longer this worker's: the caller's transaction rolls back."""
    if not _held(chunk).update(scored=F("scored") + items, seconds=F("seconds") + max(0.0, seconds),
                               lease_until=_lease_end()):
        raise LeaseLost(f"chunk {chunk.index} of run {chunk.run_id} is no longer held by {chunk.leased_by}")


def chunk_finish(*, chunk: WorkChunk) -> bool:
    done = bool(_held(chunk).update(state=ChunkState.DONE, done_at=Now(), done_by=F("leased_by"), lease_until=None))
    if not done:
        logger.warning("chunk %s of run %s was taken over before %s finished it", chunk.index, chunk.run_id,
                       chunk.leased_by)
    return done


def chunk_release(*, chunk: WorkChunk) -> bool:
    """Give the chunk back (pending) for another worker or a later resume; what was written stays."""
    return bool(_held(chunk).update(state=ChunkState.PENDING, lease_until=None))


def chunks_summary(*, model: type[WorkChunk], job: Job) -> dict:
    """Per state counts, the items scored and the worker time spent on them, over the run's chunks."""
    rows = _of(model, job)
    summary = {state: 0 for state in ChunkState.values}
    summary.update(dict(rows.values("state").annotate(n=Count("pk")).values_list("state", "n")))
    totals = rows.aggregate(scored=Sum("scored"), seconds=Sum("seconds"), chunks=Count("pk"))
    summary.update(chunks=totals["chunks"], scored=totals["scored"] or 0, seconds=totals["seconds"] or 0.0)
    return summary


def seconds_per_item(*, model: type[WorkChunk], job: Job) -> float | None:
    """A worker's scoring time per item over the run's chunks (whoever scored them); None before any."""
    summary = chunks_summary(model=model, job=job)
    return round(summary["seconds"] / summary["scored"], 6) if summary["scored"] else None


@contextmanager
def chunk_leased(chunk: WorkChunk) -> Iterator[WorkChunk]:
    """Keep the chunk's lease renewed while the block runs."""
    interval = job_heartbeat_interval()
    beat = Beat(f"chunk {chunk.index} of run {chunk.run_id}", lambda: chunk_renew(chunk=chunk),
                interval) if interval > 0 else None
    if beat is not None:
        beat.start()
    try:
        yield chunk
    finally:
        if beat is not None:
            beat.stop()


def run_chunks_work(*, model: type[WorkChunk], job: Job, worker: str, work,
                    split: Callable[[], list[tuple[int, int, int]]] | None = None) -> bool:
    """`chunks_work` for one worker of a run: the holder (it passes `split`) also splits the run and asks for
    helpers; a helper passes no `split`. On an object store each worker holds its next chunk ahead and fetches it
    meanwhile. `work` scores a chunk when called and has `stop()`, `prefetch(chunk)` and `warmer` (its cache
    warmer, closed here when the worker is done)."""
    try:
        return chunks_work(
            model=model, job=job, worker=worker, work=work, stop=work.stop, split=split,
            on_split=(lambda n: helpers_ask(job=job, added=n)) if split is not None else None,
            prefetch=work.prefetch if work.warmer.active else None)
    finally:
        work.warmer.close()


def chunks_work(*, model: type[WorkChunk], job: Job, worker: str, work: Callable[[WorkChunk], bool],
                stop: Callable[[], bool], split: Callable[[], list[tuple[int, int, int]]] | None = None,
                on_split: Callable[[int], None] | None = None,
                prefetch: Callable[[WorkChunk], None] | None = None) -> bool:
    """Claim and score the run's chunks until none is left; True when the run's items are all done.

    `work(chunk)` scores what is left of the chunk and says whether it got to its end (False: it stopped for
    `stop()`). The run's holder passes `split` (what is left, as chunk bounds) and `on_split(n)` (n chunks were
    added and committed: ask for helpers): when nothing is claimable it waits for the chunks other workers hold,
    then splits what is left, and returns True only when nothing is; a holder that takes up a run already split
    calls `on_split` for the chunks still free. A helper (no `split`) returns as soon as nothing is claimable.
    False: stopped for `stop()`.

    `prefetch(chunk)` (an object store): the worker holds its next chunk too while it scores one, and
    `prefetch` starts fetching that one's files, so that fetching and scoring overlap. Holding it (not just
    guessing which chunk comes next) keeps the other workers from fetching the same files."""
    last_split: list[tuple[int, int, int]] | None = None
    if split is not None and on_split is not None:
        # a run taken up again (its holder died, or released it at a time limit) has free chunks: ask for help again
        free = _of(model, job).filter(_claimable()).count()
        if free > 1:
            on_split(free)
    ahead: WorkChunk | None = None
    try:
        while True:
            if stop():
                return False
            chunk, ahead = ahead or chunk_claim(model=model, job=job, worker=worker), None
            if chunk is not None:
                if prefetch is not None:
                    ahead = chunk_claim(model=model, job=job, worker=worker)
                    if ahead is not None:
                        prefetch(ahead)
                try:
                    with chunk_leased(chunk), (chunk_leased(ahead) if ahead is not None else nullcontext()):
                        finished = work(chunk)
                except LeaseLost as exc:
                    logger.warning("%s; %s leaves it", exc, worker)
                    continue
                except BaseException:
                    chunk_release(chunk=chunk)
                    raise
                if not finished:
                    chunk_release(chunk=chunk)
                    return False
                chunk_finish(chunk=chunk)
                continue
            if split is None:
                return True  # a helper: nothing (more) to take
            if _of(model, job).filter(state=ChunkState.LEASED).exists():
                time.sleep(POLL_S)  # other workers' chunks: wait until they finish, or their lease runs out
                continue
            bounds = split()
            if not bounds:
                return True
            if bounds == last_split:
                raise RuntimeError(f"run {job.pk}: the chunks {bounds[:3]}... were finished but their items are left")
            last_split = bounds
            added = chunks_create(model=model, job=job, bounds=bounds)
            logger.info("run %s split into %s chunk(s) of at most %s items", job.pk, added, max(b[2] for b in bounds))
            if on_split is not None:
                on_split(added)
    finally:
        if ahead is not None:
            chunk_release(chunk=ahead)  # held for later, never started: the others (or a resume) take it
