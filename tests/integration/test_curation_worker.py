"""A real Celery worker (real Redis, the test PostgreSQL) scores a filter run; killed mid-run, the run resumes."""

from __future__ import annotations

import pytest

from aesplatform.catalog.models import ImageStatus
from aesplatform.common.models import JobState
from aesplatform.curation import services
from aesplatform.curation.models import FilterResult, FilterRun, ReviewBatch
from tests.conftest import CeleryWorker, wait_for
from tests.support.faults import LIFE_CYCLE, SLOW_APP
from tests.support.scenes import stored_scenes, tiny_run_kwargs

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.998}


# The first worker (the fault-injection app) sleeps before writing each scored batch, so the kill lands mid-run.
SLOW_SCORING = {"AESP_FAULT_SLOW": "aesplatform.curation.services:_results_write=0.4"}


@pytest.fixture
def decode_workers(monkeypatch):
    """Workers started after this decode in 2 DataLoader worker processes."""
    monkeypatch.setenv("AESP_FILTER_NUM_WORKERS", "2")


def test_gpu_task_is_routed_to_the_gpu_queue():
    from aesplatform.celery import app
    from aesplatform.curation.tasks import filter_run_execute

    assert app.amqp.router.route({}, filter_run_execute.name)["queue"].name == "gpu"


@pytest.mark.django_db(transaction=True)
def test_killed_worker_resumes_and_scores_every_image_exactly_once(decode_workers, celery_worker_factory,
                                                                   curator_user):
    first = celery_worker_factory(queues="gpu", app=SLOW_APP, **SLOW_SCORING, **LIFE_CYCLE)
    images = stored_scenes(24)
    run = services.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
    progress = lambda: FilterRun.objects.get(pk=run.pk).processed  # noqa: E731
    wait_for(lambda: progress() >= 6, timeout=120, message="the first batches to be committed")
    first.kill()
    before_kill = dict(FilterResult.objects.filter(run=run, scored_at__isnull=False).values_list("id", "scored_at"))
    run.refresh_from_db()
    assert run.state == JobState.RUNNING and 6 <= run.processed < run.total == 24
    assert len(before_kill) == run.processed

    # A new worker: its embedded beat's job sweep re-queues the run (no heartbeat any more) and it continues it.
    second = CeleryWorker(first.env, "cpu,gpu", beat=True)  # the plain app: no slowdown
    try:
        second.start()
        wait_for(lambda: FilterRun.objects.get(pk=run.pk).state == JobState.SUCCEEDED, timeout=120,
                 message=f"the resumed run to finish; worker log:\n{second.logs()[-3000:]}")
    finally:
        second.stop()
    run.refresh_from_db()
    results = FilterResult.objects.filter(run=run)
    assert run.processed == run.total == results.count() == 24
    assert sorted(results.values_list("image_id", flat=True)) == sorted(i.pk for i in images)  # one row per image
    assert not results.filter(scored_at__isnull=True).exists() and not results.exclude(error="").exists()
    # what was scored before the kill was not scored again
    assert dict(results.filter(pk__in=before_kill).values_list("id", "scored_at")) == before_kill
    assert "filter_run_execute" in second.logs()
    assert ReviewBatch.objects.filter(run=run).count() == 3
    assert set(results.values_list("image__status", flat=True)) == {ImageStatus.FILTERED}


@pytest.mark.timeout(180)
def test_decode_workers_start_cleanly_in_a_process_that_used_the_broker(tmp_path):
    """Regression: forked decode workers inherited kombu's pooled Redis connections and hung on them."""
    from aesplatform.celery import app
    from aesplatform.curation.engine import pipeline, prompts
    from aesplatform.curation.engine.clip import TINY_MODEL, ClipScorer
    from tests.support.scenes import jpeg_bytes, scene

    app.control.inspect(timeout=0.5).ping()  # leaves a pooled broker connection mid-BRPOP in this process
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(jpeg_bytes(scene(i)))
        paths.append(str(path))
    scorer = ClipScorer(model_name=TINY_MODEL, checkpoint="", prompt_set=prompts.default_prompt_set())
    scored = [s for batch in pipeline.pipeline_run([pipeline.ImageItem(i, p) for i, p in enumerate(paths)], scorer,
                                                   batch_size=2, num_workers=2) for s in batch]
    assert sorted(s.key for s in scored) == [0, 1, 2] and not any(s.error for s in scored)
