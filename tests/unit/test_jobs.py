"""The common job life cycle (aesplatform.common.jobs) on the real database: one claim wins, the heartbeat, the
sweep takes only what has no sign of life, the cancel and resume rules, errors cut the same way everywhere."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from aesplatform.catalog.models import ImportJob
from aesplatform.common import jobs
from aesplatform.common.exceptions import ConflictError
from aesplatform.common.jobs import (
    ERROR_MAX_CHARS,
    job_cancel,
    job_claim,
    job_fail,
    job_is_stale,
    job_models,
    job_progress,
    job_resume,
    job_running,
    job_should_stop,
    job_succeed,
    job_sweep,
)
from aesplatform.common.models import JobState
from tests import factories

pytestmark = [pytest.mark.both_databases]

LONG_AGO = timedelta(hours=1)


def _job(user, **fields) -> ImportJob:
    return ImportJob.objects.create(kind="folder", created_by=user, source_name="jobs", **fields)


def _stale(user, state: str, **fields) -> ImportJob:
    old = timezone.now() - LONG_AGO
    job = ImportJob.objects.create(kind="folder", created_by=user, source_name="jobs", state=state,
                                   started_at=old if state != "pending" else None, **fields)
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=old, updated_at=old)
    return ImportJob.objects.get(pk=job.pk)


@pytest.fixture
def user(db):
    return factories.curator()


def test_every_job_kind_shares_the_life_cycle():
    labels = sorted(model._meta.label for model in job_models())
    assert labels == ["catalog.ImportJob", "curation.FilterRun", "datasets.Export", "modeling.PrescoreRun",
                      "modeling.TrainingJob"]
    for model in job_models():
        names = {c.name for c in model._meta.constraints}
        assert f"{model._meta.model_name}_state_valid" in names  # declared once, the old names kept


def test_of_two_claims_one_wins_and_the_loser_changes_nothing(user):
    job = _job(user)
    first = job_claim(model=ImportJob, job_id=job.pk)
    assert first is not None and first.state == JobState.RUNNING and first.attempts == 1
    assert first.started_at is not None and first.heartbeat_at is not None
    assert job_claim(model=ImportJob, job_id=job.pk) is None  # a second delivery while the first is alive
    assert ImportJob.objects.get(pk=job.pk).attempts == 1
    assert job_progress(job=first, processed=0) and not job_should_stop(job=first)


def test_a_job_whose_heartbeat_went_stale_is_taken_over_and_the_old_worker_is_fenced_off(user):
    job = _job(user)
    old = job_claim(model=ImportJob, job_id=job.pk)
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
    assert job_is_stale(ImportJob.objects.get(pk=job.pk))
    new = job_claim(model=ImportJob, job_id=job.pk)
    assert new is not None and new.attempts == 2
    # the worker that was given up on can no longer write
    assert not job_progress(job=old, processed=0) and job_should_stop(job=old)
    assert not job_succeed(job=old) and not job_fail(job=old, error="late")
    assert ImportJob.objects.get(pk=job.pk).state == JobState.RUNNING
    assert job_succeed(job=new)
    assert ImportJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED
    assert job_claim(model=ImportJob, job_id=job.pk) is None  # finished: nothing to do


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_keeps_a_running_job_alive_and_stops_with_the_block(settings):
    settings.AESP_JOB_HEARTBEAT_S = 0.05
    job = _job(factories.curator())
    with job_running(model=ImportJob, job_id=job.pk) as held:
        first = ImportJob.objects.get(pk=job.pk).heartbeat_at
        time.sleep(0.5)
        beats = ImportJob.objects.get(pk=job.pk).heartbeat_at
        assert beats > first
        job_succeed(job=held)
    time.sleep(0.2)
    after = ImportJob.objects.get(pk=job.pk).heartbeat_at
    time.sleep(0.3)
    assert ImportJob.objects.get(pk=job.pk).heartbeat_at == after  # the thread stopped
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]


def test_the_sweep_requeues_only_jobs_without_a_sign_of_life(user, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(jobs, "_send", lambda app, name, pk: sent.append((name, pk)))
    monkeypatch.setattr(jobs, "_messages_waiting", lambda app, name, cache: 0)  # the pending one's message is lost
    alive_running = job_claim(model=ImportJob, job_id=_job(user).pk)
    fresh_pending = _job(user)
    dead_running = _stale(user, "running", attempts=1)
    lost_pending = _stale(user, "pending")
    dead_cancelled = _stale(user, "running", attempts=1, cancel_requested=True)
    finished = _stale(user, "succeeded", finished_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        swept = job_sweep()
    assert sorted(swept["catalog.ImportJob"]) == sorted([dead_running.pk, lost_pending.pk])
    assert sorted(sent) == sorted([("aesplatform.catalog.tasks.import_job_run", dead_running.pk),
                                   ("aesplatform.catalog.tasks.import_job_run", lost_pending.pk)])
    states = dict(ImportJob.objects.values_list("pk", "state"))
    assert states[dead_running.pk] == states[lost_pending.pk] == JobState.PENDING
    assert states[dead_cancelled.pk] == JobState.CANCELLED  # a cancel asked of a dead worker ends it
    assert states[alive_running.pk] == JobState.RUNNING and states[fresh_pending.pk] == JobState.PENDING
    assert states[finished.pk] == JobState.SUCCEEDED
    # swept once: their sign of life is now, so the next sweep leaves them alone
    with django_capture_on_commit_callbacks(execute=True):
        assert job_sweep() == {}
    assert len(sent) == 2
    # the re-queued job is claimed from where it stopped, by one worker
    again = job_claim(model=ImportJob, job_id=dead_running.pk)
    assert again is not None and again.attempts == 2


def test_the_sweep_leaves_a_pending_job_alone_while_messages_wait_in_its_queue(user, monkeypatch,
                                                                              django_capture_on_commit_callbacks):
    waiting_behind_others = _stale(user, "pending")
    monkeypatch.setattr(jobs, "_messages_waiting", lambda app, name, cache: 3)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert job_sweep() == {}
    assert not queued and ImportJob.objects.get(pk=waiting_behind_others.pk).state == JobState.PENDING


def test_the_sweep_counts_the_messages_of_a_queue_on_the_real_broker():
    from aesplatform.celery import app

    cache: dict = {}
    assert jobs._messages_waiting(app, "aesplatform.modeling.tasks.training_job_run", cache) is not None
    assert list(cache) == ["gpu"]


def test_cancel_rules(user):
    pending = job_cancel(job=_job(user))
    assert pending.state == JobState.CANCELLED and pending.finished_at and pending.cancel_requested
    running = job_claim(model=ImportJob, job_id=_job(user).pk)
    asked = job_cancel(job=running)
    assert asked.state == JobState.RUNNING and asked.cancel_requested  # the worker ends it at its next safe point
    assert job_should_stop(job=running)
    stalled = job_cancel(job=_stale(user, "running", attempts=1))
    assert stalled.state == JobState.CANCELLED  # no worker alive to end it
    with pytest.raises(ConflictError) as caught:
        job_cancel(job=pending)
    assert caught.value.status_code == 409 and "only pending or running" in caught.value.message
    # a cancelled-while-queued job is never claimed
    queued = _job(user)
    ImportJob.objects.filter(pk=queued.pk).update(cancel_requested=True)
    assert job_claim(model=ImportJob, job_id=queued.pk) is None
    assert ImportJob.objects.get(pk=queued.pk).state == JobState.CANCELLED


def test_resume_rules(user, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr("aesplatform.common.jobqueue.broker_check", lambda **kw: None)
    failed = job_claim(model=ImportJob, job_id=_job(user).pk)
    job_fail(job=failed, error="boom")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        resumed = job_resume(job=failed)
        stalled = job_resume(job=_stale(user, "running", attempts=1))
    assert resumed.state == JobState.PENDING and resumed.error == "" and resumed.finished_at is None
    assert stalled.state == JobState.PENDING and len(queued) == 2
    live = job_claim(model=ImportJob, job_id=_job(user).pk)
    done = job_claim(model=ImportJob, job_id=_job(user).pk)
    job_succeed(job=done)
    for job, code in ((live, "already_running"), (done, "already_finished"), (job_cancel(job=_job(user)), "cancelled")):
        with pytest.raises(ConflictError) as caught:
            job_resume(job=job)
        assert caught.value.code == code


def test_errors_are_cut_the_same_way_everywhere(user):
    job = job_claim(model=ImportJob, job_id=_job(user).pk)
    error = "RuntimeError: " + "x" * 10_000 + " the innermost cause"
    job_fail(job=job, error=error)
    stored = ImportJob.objects.get(pk=job.pk).error
    assert len(stored) == ERROR_MAX_CHARS and stored.startswith("RuntimeError: xxx")
    assert stored.endswith("the innermost cause") and "[... cut ...]" in stored
    from aesplatform.common.jobqueue import job_failed_unqueued

    pending = _job(user)
    job_failed_unqueued(ImportJob, pending.pk)(error)
    assert ImportJob.objects.get(pk=pending.pk).error == stored
