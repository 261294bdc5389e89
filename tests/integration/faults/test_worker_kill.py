"""kill -9 a real Celery worker in the middle of every kind of job; the jobs finish BY THEMSELVES (no resume call),
from where they stopped, each item once, on both brokers: Redis (production) and the filesystem broker (`make run`).

What takes them up again is the job sweep (aesplatform.common.jobs), queued by celery beat embedded in the new
worker, not a redelivery: the broker keeps its production visibility timeout (an hour). The workers run with the
life-cycle periods shortened through the environment (heartbeat 1 s, stale after 8 s, sweep every 2 s;
production: 15 s, 60 s, 30 s).

One kill per phase keeps the module within a few minutes: the first worker (4 processes, each job's work slowed
by faults/slow_app.py so that the kill lands half-way) runs an import, a filter run, an export and a training job
at once and is killed; a second worker finishes all four; then it pre-scores with the trained model, slowly, and
is killed in turn; a third one finishes the pre-scoring. With Redis the jobs are queued as usual; with the
filesystem broker (which the test process does not publish to) they are created unqueued and the sweep queues
them, as it does a job whose message was lost.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from aesplatform.catalog.models import Image, ImportJob
from aesplatform.catalog.services import import_job_create
from aesplatform.common.models import JobState
from tests.conftest import wait_for
from tests.support.curation import PIXEL_ONLY
from tests.support.faults import LIFE_CYCLE, SLOW_APP
from tests.support.images import jpeg_bytes

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Slow enough that no job can finish while the test waits, one after the other, for each to be half-way (on a loaded
# 2-core machine that wait takes a minute or more): import ~2 min, filter run ~1.5 min, export ~2.5 min, training
# ~1.5 min in the first worker. The workers after the kill are not slowed.
FIRST_WORKER_SLOW = ";".join([
    "aesplatform.catalog.services:_store_chunk=30",
    "aesplatform.curation.services:_results_write=15",
    "aesplatform.datasets.writers:ImagePlacer._place=3",
    "aesplatform.modeling.services:_JobReporter.progress=6",
])
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(params=["redis", "filesystem"])
def broker(request, tmp_path, settings):
    """The environment of this test's workers for the broker; `queued`: whether jobs are queued on creation."""
    env = dict(LIFE_CYCLE)
    if request.param == "filesystem":
        var = tmp_path / "worker-var"
        var.mkdir()
        env.update(CELERY_BROKER_URL="filesystem://", CELERY_RESULT_BACKEND=f"file://{var}/celery/results",
                   AESP_VAR_DIR=str(var), AESP_EXPORT_ROOT=str(settings.AESP_EXPORT_ROOT))
    return {"name": request.param, "env": env, "queued": request.param == "redis"}


def _finished(model, pk):
    return model.objects.filter(pk=pk, state__in=FINISHED).first()


def test_killed_jobs_of_every_kind_are_taken_up_again_by_themselves_each_item_once(
        broker, celery_worker_factory, curator_user):
    from aesplatform.curation import services as curation
    from aesplatform.curation.models import FilterResult, FilterRun
    from aesplatform.datasets import services as datasets
    from aesplatform.datasets.models import Export
    from aesplatform.modeling import services as modeling
    from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun, TrainingJob
    from tests.support.datasets import labelled_set
    from tests.support.modeling import frozen_version, synthetic_images
    from tests.support.scenes import stored_scenes, tiny_run_kwargs

    env, queued = broker["env"], broker["queued"]
    folder = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0]) / f"killed-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        # --- the data: 200 files to import, 12 images to filter, a 50-image version to export, 24 to train on
        for index in range(200):  # four chunks of 64 rows (one transaction each)
            (folder / f"{index:03d}.jpg").write_bytes(jpeg_bytes(40, 30, seed=5000 + index))
        scenes = stored_scenes(12)
        labelled_set(30, 20, groups={1: 3, 3: 3})
        export_version = datasets.dataset_version_freeze(version=datasets.dataset_version_create(
            created_by=curator_user, name=f"killed-{uuid.uuid4().hex[:8]}", split_seed=3))
        training_images = synthetic_images(24)
        training_version = frozen_version(training_images, user=curator_user)

        # --- phase 1: four jobs at once in a slowed worker, killed half-way
        first = celery_worker_factory("cpu,gpu", app=SLOW_APP, concurrency=4, beat=True,
                                      AESP_FAULT_SLOW=FIRST_WORKER_SLOW, **env)
        job = import_job_create(created_by=curator_user, kind="folder", path=str(folder), enqueue=queued)
        run = curation.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in scenes], batch_size=2,
                                         review_batch_size=10, thresholds=PIXEL_ONLY, enqueue=queued,
                                         **tiny_run_kwargs())
        export, _ = datasets.export_create(version=export_version, format="humanbeauty", options={},
                                           created_by=curator_user, enqueue=queued)
        training = modeling.training_job_create(
            dataset_version=training_version, preset="tiny-cpu", created_by=curator_user, enqueue=queued,
            config={"max_steps": 16, "batch_size": 8, "checkpoint_every": 3, "log_every": 1, "metavoter_steps": 10})
        target = datasets.export_target(export)
        partial = target.parent / f".{target.name}.partial-{export.pk}-1"  # the first attempt's
        copied = lambda: len([p for p in partial.rglob("*") if p.is_file()]) if partial.is_dir() else 0  # noqa: E731
        half_way = {
            "import": lambda: ImportJob.objects.get(pk=job.pk).processed >= 64,
            "filter run": lambda: FilterRun.objects.get(pk=run.pk).processed >= 2,
            "export": lambda: copied() >= 5,
            "training": lambda: TrainingJob.objects.get(pk=training.pk).step >= 4,
        }
        for name, reached in half_way.items():
            wait_for(reached, timeout=150, message=f"the {name} half-way; worker log:\n{first.logs()[-3000:]}")
        first.kill()
        job.refresh_from_db(), run.refresh_from_db(), export.refresh_from_db(), training.refresh_from_db()
        states = [(type(j).__name__, j.state, j.attempts, j.error) for j in (job, run, export, training)]
        assert all(j.state == JobState.RUNNING and j.attempts == 1 for j in (job, run, export, training)), states
        assert 64 <= job.processed < 200 and 2 <= run.processed < 12 and not target.exists()
        killed_at = training.step
        assert killed_at < 16
        scored_before = dict(FilterResult.objects.filter(run=run, scored_at__isnull=False)
                             .values_list("id", "scored_at"))

        # --- nobody resumes anything: the new worker's sweep takes the four jobs up again
        second = celery_worker_factory("cpu,gpu", app=SLOW_APP, concurrency=2, beat=True,
                                       AESP_FAULT_SLOW="aesplatform.modeling.services:_score_chunk=2", **env)
        logs = lambda: second.logs()[-3000:]  # noqa: E731
        job = wait_for(lambda: _finished(ImportJob, job.pk), timeout=180, message=f"the import; log:\n{logs()}")
        run = wait_for(lambda: _finished(FilterRun, run.pk), timeout=180, message=f"the filter run; log:\n{logs()}")
        export = wait_for(lambda: _finished(Export, export.pk), timeout=180, message=f"the export; log:\n{logs()}")
        training = wait_for(lambda: _finished(TrainingJob, training.pk), timeout=240,
                            message=f"the training job; log:\n{logs()}")
        assert "job sweep re-queued" in second.logs()

        assert job.state == JobState.SUCCEEDED and job.attempts == 2, job.error
        assert (job.total, job.processed, job.imported_count, job.duplicate_count, job.error_count) == (
            200,
            200,
            200,
            0,
            0,
        )
        images = Image.objects.filter(import_job=job)
        assert images.count() == 200 and images.values("sha256").distinct().count() == 200
        assert sorted(images.values_list("original_name", flat=True)) == [f"{i:03d}.jpg" for i in range(200)]

        assert run.state == JobState.SUCCEEDED and run.attempts == 2, run.error
        results = FilterResult.objects.filter(run=run)
        assert run.processed == results.count() == 12 and not results.filter(scored_at__isnull=True).exists()
        assert dict(results.filter(pk__in=scored_before).values_list("id", "scored_at")) == scored_before

        assert export.state == JobState.SUCCEEDED and export.attempts == 2, export.error
        assert export.processed == export.total == 50 and Path(export.path) == target
        assert len([p for p in target.rglob("*") if p.suffix in (".png", ".jpg")]) == 50
        assert not [p for p in target.parent.iterdir() if ".partial-" in p.name]

        assert training.state == JobState.SUCCEEDED and training.attempts == 2, training.error + training.log
        assert [p[0] for p in training.loss_curve] == list(range(1, 17))  # every step once
        resumed_at = int(training.log.split("continuing from the checkpoint of step ")[1].split()[0].rstrip(")"))
        assert 3 <= resumed_at <= killed_at and resumed_at % 3 == 0  # from its checkpoint, not from step 0

        # --- phase 2: pre-scoring with the trained model, killed half-way, finished by a third worker
        model = ModelVersion.objects.get(training_job=training)
        modeling.model_version_promote(model_version=model, user=curator_user)
        image_ids = [image.pk for image, _ in training_images]
        prescoring = modeling.prescore_run_create(created_by=curator_user, image_ids=image_ids, batch_size=1,
                                                  enqueue=queued)
        wait_for(lambda: PrescoreRun.objects.get(pk=prescoring.pk).processed >= 8, timeout=120,
                 message=f"a first chunk scored; log:\n{logs()}")
        second.kill()
        prescoring.refresh_from_db()
        assert prescoring.state == JobState.RUNNING and 8 <= prescoring.processed < 24
        kept = dict(Prescore.objects.filter(model_version=model).values_list("image_id", "created_at"))

        third = celery_worker_factory("cpu,gpu", beat=True, **env)
        prescoring = wait_for(lambda: _finished(PrescoreRun, prescoring.pk), timeout=120,
                              message=f"the pre-scoring; log:\n{third.logs()[-3000:]}")
        assert prescoring.state == JobState.SUCCEEDED and prescoring.attempts == 2, prescoring.error
        rows = Prescore.objects.filter(model_version=model)
        assert prescoring.processed == prescoring.total == 24
        assert sorted(rows.values_list("image_id", flat=True)) == sorted(image_ids)  # one row per image
        assert dict(rows.filter(image_id__in=kept).values_list("image_id", "created_at")) == kept
    finally:
        shutil.rmtree(folder, ignore_errors=True)
