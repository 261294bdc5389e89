"""Chunks of a run shared by several workers (aesplatform.common.chunks): claims in order, one holder per chunk
even when workers claim at once (real connections in threads, PostgreSQL and SQLite), leases that run out are
taken over and the old holder can no longer write, the holder waits for the others and splits what is left, a
helper stops on a cancel; a filter run scored in chunks in-process."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from aesplatform.common import chunks
from aesplatform.common.models import ChunkState, JobState
from aesplatform.curation import services
from aesplatform.curation.models import FilterResult, FilterRun, FilterRunChunk
from tests import factories
from tests.support.scenes import stored_scenes, tiny_run_kwargs

PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.998}


def _run(**fields) -> FilterRun:
    return FilterRun.objects.create(name="chunks", created_by=factories.curator(), state=JobState.RUNNING,
                                    attempts=1, total=100, **fields)


def _chunked(count: int, per: int = 2) -> tuple[FilterRun, list[int]]:
    run = _run()
    keys = list(range(1, count * per + 1))
    chunks.chunks_create(model=FilterRunChunk, job=run, bounds=chunks.chunk_bounds(keys, size=per))
    return run, keys


def test_chunk_bounds_are_consecutive_groups_and_the_size_is_whole_batches(settings):
    assert chunks.chunk_bounds([3, 5, 8, 9, 12], size=2) == [(3, 5, 2), (8, 9, 2), (12, 12, 1)]
    assert chunks.chunk_bounds(iter([]), size=4) == []
    with pytest.raises(ValueError):
        chunks.chunk_bounds([2, 1], size=4)
    settings.AESP_RUN_CHUNK_SIZE = 10
    assert chunks.chunk_size_aligned(4) == 12 and chunks.chunk_size_aligned(5) == 10
    assert chunks.chunk_size_aligned(64) == 64  # never less than one batch


@pytest.mark.both_databases
@pytest.mark.django_db
def test_claims_go_in_order_and_a_held_or_finished_chunk_is_not_claimed_again():
    run, _ = _chunked(1)
    run_more = chunks.chunks_create(model=FilterRunChunk, job=run, bounds=[(3, 4, 2), (5, 6, 2)])  # a second round
    assert run_more == 2 and list(FilterRunChunk.objects.filter(run=run).values_list("index", flat=True)) == [0, 1, 2]
    first = chunks.chunk_claim(model=FilterRunChunk, job=run, worker="a")
    second = chunks.chunk_claim(model=FilterRunChunk, job=run, worker="b")
    assert (first.index, first.leased_by, first.attempts) == (0, "a", 1)
    assert (second.index, second.leased_by) == (1, "b")
    assert first.lease_until > timezone.now() + timedelta(seconds=30)  # AESP_JOB_STALE_S ahead
    chunks.chunk_scored_add(chunk=first, items=2, seconds=0.5)
    assert chunks.chunk_finish(chunk=first)
    third = chunks.chunk_claim(model=FilterRunChunk, job=run, worker="a")
    assert third.index == 2
    assert chunks.chunk_claim(model=FilterRunChunk, job=run, worker="c") is None  # two held, one done
    assert not chunks.chunks_claimable(model=FilterRunChunk, job=run)
    assert chunks.chunk_release(chunk=third)  # given back (a cancel): claimable again, by anyone
    assert chunks.chunk_claim(model=FilterRunChunk, job=run, worker="c").index == 2
    done = FilterRunChunk.objects.get(pk=first.pk)
    assert (done.state, done.done_by, done.scored, done.seconds, done.lease_until) == (ChunkState.DONE, "a", 2, 0.5,
                                                                                        None)
    assert chunks.chunks_summary(model=FilterRunChunk, job=run) == {
        "pending": 0, "leased": 2, "done": 1, "chunks": 3, "scored": 2, "seconds": 0.5}


@pytest.mark.both_databases
@pytest.mark.django_db
def test_a_lease_that_ran_out_is_taken_over_and_its_old_holder_can_no_longer_write():
    run, _ = _chunked(2)
    dead = chunks.chunk_claim(model=FilterRunChunk, job=run, worker="dead")
    assert chunks.chunk_renew(chunk=dead)
    FilterRunChunk.objects.filter(pk=dead.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    taker = chunks.chunk_claim(model=FilterRunChunk, job=run, worker="alive")
    assert (taker.pk, taker.attempts, taker.leased_by) == (dead.pk, 2, "alive")  # the expired one first (index 0)
    with pytest.raises(chunks.LeaseLost):
        chunks.chunk_scored_add(chunk=dead, items=2, seconds=1.0)
    assert not chunks.chunk_renew(chunk=dead) and not chunks.chunk_finish(chunk=dead)
    assert not chunks.chunk_release(chunk=dead)
    chunks.chunk_scored_add(chunk=taker, items=2, seconds=1.0)
    assert chunks.chunk_finish(chunk=taker)
    row = FilterRunChunk.objects.get(pk=dead.pk)
    assert (row.state, row.done_by, row.scored) == (ChunkState.DONE, "alive", 2)


@pytest.mark.both_databases
@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_never_get_the_same_chunk():
    """Four threads, each with its own database connection, claim 40 chunks as fast as they can (PostgreSQL: SKIP
    LOCKED; SQLite: serialized writers and the guarded update)."""
    run, _ = _chunked(40, per=1)
    claimed: dict[str, list[int]] = {}
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def claim_all(name: str) -> None:
        try:
            start.wait()
            mine = claimed.setdefault(name, [])
            while (chunk := chunks.chunk_claim(model=FilterRunChunk, job=run, worker=name)) is not None:
                mine.append(chunk.index)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    every = [index for mine in claimed.values() for index in mine]
    assert sorted(every) == list(range(40))  # each chunk once, none left
    rows = FilterRunChunk.objects.filter(run=run)
    assert set(rows.values_list("attempts", flat=True)) == {1}
    assert all(r.index in claimed[r.leased_by] for r in rows)  # the row says who holds it


@pytest.mark.django_db
def test_the_holder_scores_free_chunks_waits_for_a_held_one_and_takes_it_over_when_its_lease_runs_out(settings):
    settings.AESP_JOB_STALE_S = 1.0
    settings.AESP_JOB_HEARTBEAT_S = 0  # no renewing thread in this test: leases last AESP_JOB_STALE_S
    run = _run()
    left = set(range(1, 11))
    scored: list[int] = []
    splits: list[int] = []

    def split():
        return chunks.chunk_bounds(sorted(left), size=2)

    def on_split(added):
        splits.append(added)
        # another worker takes the first chunk and dies with it
        assert chunks.chunk_claim(model=FilterRunChunk, job=run, worker="dies").index == 0

    def work(chunk):
        keys = [k for k in sorted(left) if chunk.first_key <= k <= chunk.last_key]
        chunks.chunk_scored_add(chunk=chunk, items=len(keys), seconds=0.01)
        scored.extend(keys)
        left.difference_update(keys)
        return True

    assert chunks.chunks_work(model=FilterRunChunk, job=run, worker="holder", work=work, stop=lambda: False,
                              split=split, on_split=on_split)
    assert splits == [5] and sorted(scored) == list(range(1, 11)) and len(scored) == 10  # each key once
    rows = {r.index: r for r in FilterRunChunk.objects.filter(run=run)}
    assert {r.state for r in rows.values()} == {ChunkState.DONE}
    assert (rows[0].attempts, rows[0].done_by) == (2, "holder")  # taken over after its lease ran out
    assert chunks.chunks_summary(model=FilterRunChunk, job=run)["scored"] == 10


@pytest.mark.django_db
def test_a_holder_taking_up_a_run_already_split_asks_for_help_with_its_free_chunks():
    run, keys = _chunked(3)  # split by a holder that died before scoring anything
    left, asked = set(keys), []

    def work(chunk):
        left.difference_update(range(chunk.first_key, chunk.last_key + 1))
        return True

    assert chunks.chunks_work(model=FilterRunChunk, job=run, worker="next", work=work, stop=lambda: False,
                              split=lambda: chunks.chunk_bounds(sorted(left), size=2), on_split=asked.append)
    assert asked == [3] and not left  # helpers asked for the 3 free chunks; no new split
    assert FilterRunChunk.objects.filter(run=run).count() == 3


@pytest.mark.django_db
def test_a_helper_ends_at_once_when_nothing_is_free_and_a_stop_gives_the_chunk_back():
    run, _ = _chunked(2)
    for _ in range(2):
        chunks.chunk_claim(model=FilterRunChunk, job=run, worker="other")
    assert chunks.chunks_work(model=FilterRunChunk, job=run, worker="helper", work=lambda c: 1 / 0,
                              stop=lambda: False)  # nothing claimable: the work never runs
    other_run, _ = _chunked(2)
    assert not chunks.chunks_work(model=FilterRunChunk, job=other_run, worker="helper", work=lambda c: False,
                                  stop=lambda: False)
    assert set(FilterRunChunk.objects.filter(run=other_run).values_list("state", flat=True)) == {ChunkState.PENDING}


@pytest.mark.django_db
def test_a_filter_run_is_scored_in_batch_aligned_chunks_each_image_once(settings, curator_user):
    settings.AESP_RUN_CHUNK_SIZE = 5  # -> 6: whole batches of 3
    images = stored_scenes(14)
    run = services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=3,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, enqueue=False,
                                     **tiny_run_kwargs())
    run = services.filter_run_execute(run_id=run.pk, num_workers=0, worker="solo")
    assert run.state == JobState.SUCCEEDED, run.error
    assert run.processed == run.total == 14 and run.seconds_per_image > 0
    rows = list(FilterRunChunk.objects.filter(run=run).order_by("index"))
    assert [r.size for r in rows] == [6, 6, 2] and [r.scored for r in rows] == [6, 6, 2]
    assert {r.done_by for r in rows} == {f"solo:{os.getpid()}"}
    results = list(FilterResult.objects.filter(run=run).order_by("id").values_list("id", flat=True))
    assert [(r.first_key, r.last_key) for r in rows] == [(results[0], results[5]), (results[6], results[11]),
                                                         (results[12], results[13])]
    # a helper asked late finds nothing to do and ends at once
    assert services.filter_run_assist(run_id=run.pk, num_workers=0) == {"run": run.pk, "chunks": 0}


@pytest.mark.django_db
def test_a_helper_records_progress_but_no_sign_of_life_and_a_cancel_stops_it_after_its_batch(
        settings, curator_user, monkeypatch):
    from aesplatform.common import jobs

    settings.AESP_RUN_CHUNK_SIZE = 4
    images = stored_scenes(8)
    run = services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, enqueue=False,
                                     **tiny_run_kwargs())
    held = jobs.job_claim(model=FilterRun, job_id=run.pk)  # the holder (this test) has split the run
    chunks.chunks_create(model=FilterRunChunk, job=held, bounds=services._filter_run_split(held))
    beat_before = FilterRun.objects.get(pk=run.pk).heartbeat_at
    write = services._results_write

    def write_then_cancel(**kwargs):  # the curator cancels while the helper's first batch is being written
        written = write(**kwargs)
        jobs.job_cancel(job=FilterRun.objects.get(pk=run.pk))
        return written

    monkeypatch.setattr(services, "_results_write", write_then_cancel)
    assert services.filter_run_assist(run_id=run.pk, num_workers=0, worker="helper") == {
        "run": run.pk, "chunks": 0, "stopped": True}
    rows = list(FilterRunChunk.objects.filter(run=run).order_by("index"))
    assert [(r.state, r.scored, r.attempts) for r in rows] == [(ChunkState.PENDING, 2, 1), (ChunkState.PENDING, 0, 0)]
    assert FilterResult.objects.filter(run=run, scored_at__isnull=False).count() == 2  # one batch, then it stopped
    run.refresh_from_db()
    assert run.processed == 2 and run.heartbeat_at == beat_before  # progress, but only the holder beats
    assert run.state == JobState.RUNNING and run.cancel_requested  # the holder ends it (at its next batch)


@pytest.mark.django_db
def test_a_prescoring_run_whose_holder_died_is_finished_by_the_next_one_from_its_chunks(settings, curator_user,
                                                                                         tmp_path):
    from aesplatform.common import jobs
    from aesplatform.modeling import services as modeling
    from aesplatform.modeling.models import ModelBackend, ModelVersion, Prescore, PrescoreRun, PrescoreRunChunk
    from model_core.model import ModelConfig, build_model, save_model
    from tests.support.modeling import synthetic_images

    settings.AESP_RUN_CHUNK_SIZE = 1  # -> 8: one scoring call of 8 batches of 1
    path = save_model(build_model(ModelConfig(), device="cpu"), tmp_path / "tiny-model")
    version = ModelVersion.objects.create(name="tiny", checkpoint_path=str(path), backend=ModelBackend.MODEL_CORE)
    image_ids = [image.pk for image, _ in synthetic_images(10)]
    run = modeling.prescore_run_create(created_by=curator_user, image_ids=image_ids, model_version=version,
                                       batch_size=1, enqueue=False)
    # the first holder split the run, took the first chunk and died: its heartbeat and its lease are old
    dead = jobs.job_claim(model=PrescoreRun, job_id=run.pk)
    assert chunks.chunks_create(model=PrescoreRunChunk, job=dead, bounds=modeling._prescore_split(dead)) == 2
    first = chunks.chunk_claim(model=PrescoreRunChunk, job=dead, worker="dead")
    long_ago = timezone.now() - timedelta(hours=1)
    PrescoreRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    PrescoreRunChunk.objects.filter(pk=first.pk).update(lease_until=long_ago)

    run = modeling.prescore_run_execute(run_id=run.pk, worker="next")
    assert run.state == JobState.SUCCEEDED and run.attempts == 2, run.error
    assert run.processed == run.total == 10
    rows = list(PrescoreRunChunk.objects.filter(run=run).order_by("index"))
    assert [(r.size, r.scored, r.attempts, r.state) for r in rows] == [(8, 8, 2, ChunkState.DONE),
                                                                        (2, 2, 1, ChunkState.DONE)]
    assert {r.done_by for r in rows} == {f"next:{os.getpid()}"}  # no second split: the chunks were found
    assert sorted(Prescore.objects.filter(model_version=version).values_list("image_id", flat=True)) == image_ids
