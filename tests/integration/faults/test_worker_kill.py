"""kill -9 a real Celery worker in the middle of each kind of job; a new worker finishes it, nothing lost or doubled.

The killed worker runs the real code with one function slowed down (faults/slow_app.py), so that the kill lands
while the job is half done; the test checks that it was. The new worker runs the plain app with a 1 s broker
visibility timeout (test only; production keeps an hour), so the killed worker's unacknowledged message comes back
to it at once (late acks + reject-on-worker-lost, aesplatform/celery.py). The filter run's kill test is in
test_curation_worker.py and the training job's kill-then-cancel in test_modeling_worker.py; here the training job
is killed and then runs to its end, and its model pre-scores under a second kill.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from aesplatform.catalog.models import Image, ImportJob
from aesplatform.catalog.services import import_job_create
from aesplatform.common.models import JobState
from tests.conftest import wait_for
from tests.unit.test_import_imaging import jpeg_bytes

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLOW_APP = "tests.integration.faults.slow_app"
RESUMING = {"CELERY_VISIBILITY_TIMEOUT": "1"}


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_killed_import_resumes_and_stores_every_image_exactly_once(celery_worker_factory, curator_user):
    root = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0])
    folder = root / f"killed-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        for index in range(200):  # four chunks of 64 rows (one transaction each)
            (folder / f"{index:03d}.jpg").write_bytes(jpeg_bytes(40, 30, seed=5000 + index))
        first = celery_worker_factory("cpu", app=SLOW_APP, AESP_FAULT_SLOW="aesplatform.catalog.services:_store_chunk=1.5")
        job = import_job_create(created_by=curator_user, kind="folder", path=str(folder))
        processed = lambda: ImportJob.objects.get(pk=job.pk).processed  # noqa: E731
        wait_for(lambda: processed() >= 64, timeout=90, message=f"a first chunk; worker log:\n{first.logs()[-3000:]}")
        first.kill()
        job.refresh_from_db()
        assert job.state == JobState.RUNNING and 64 <= job.processed < job.total == 200  # killed half-way

        second = celery_worker_factory("cpu", **RESUMING)
        job = wait_for(lambda: ImportJob.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first(),
                       timeout=120, message=f"the resumed import; worker log:\n{second.logs()[-3000:]}")
        assert job.state == JobState.SUCCEEDED, job.error
        assert (job.total, job.processed, job.imported_count, job.duplicate_count, job.error_count) == (200, 200, 200, 0, 0)
        images = Image.objects.filter(import_job=job)
        assert images.count() == 200 and images.values("sha256").distinct().count() == 200
        assert sorted(images.values_list("original_name", flat=True)) == [f"{i:03d}.jpg" for i in range(200)]
        assert job.items.filter(outcome="imported", image__isnull=False).count() == 200
        media = Path(settings.MEDIA_ROOT)
        assert all((media / key).is_file() for key in images.values_list("file", flat=True))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_export_starts_over_and_matches_an_uninterrupted_one_byte_for_byte(celery_worker_factory):
    from aesplatform.datasets import services
    from aesplatform.datasets.models import Export
    from tests import factories
    from tests.unit.test_dataset_support import labelled_set

    curator = factories.curator()
    first = celery_worker_factory("cpu", app=SLOW_APP,
                                  AESP_FAULT_SLOW="aesplatform.datasets.writers:ImagePlacer._place=0.15")
    labelled_set(30, 20, groups={1: 3, 3: 3})
    version = services.dataset_version_freeze(version=services.dataset_version_create(
        created_by=curator, name=f"killed-{uuid.uuid4().hex[:8]}", split_seed=3))
    export, created = services.export_create(version=version, format="humanbeauty", options={}, created_by=curator)
    assert created
    target = services.export_target(export)
    partial = target.parent / f".{target.name}.partial-{export.pk}"
    copied = lambda: len([p for p in partial.rglob("*") if p.is_file()]) if partial.is_dir() else 0  # noqa: E731
    wait_for(lambda: copied() >= 10, timeout=90, message=f"images being copied; worker log:\n{first.logs()[-3000:]}")
    first.kill()
    export.refresh_from_db()
    assert export.state == JobState.RUNNING and not target.exists() and copied() < 50 + 4  # killed half-way

    second = celery_worker_factory("cpu", **RESUMING)
    export = wait_for(lambda: Export.objects.filter(pk=export.pk, state__in=["succeeded", "failed"]).first(),
                      timeout=120, message=f"the resumed export; worker log:\n{second.logs()[-3000:]}")
    assert export.state == JobState.SUCCEEDED, export.error
    assert export.processed == export.total == 50 and Path(export.path) == target
    assert not [p for p in target.parent.iterdir() if ".partial-" in p.name]  # the half-written copy is gone

    # the same export written in one go (in this process, to another directory) has the same bytes, file for file
    reference_dir = Path(settings.AESP_EXPORT_ROOT) / f"reference-{uuid.uuid4().hex[:8]}"
    reference, _ = services.export_create(version=version, format="humanbeauty",
                                          options={"target_dir": str(reference_dir)}, created_by=curator,
                                          enqueue=False)
    assert services.export_run(export_id=reference.pk).state == JobState.SUCCEEDED
    got, expected = _tree_digest(target), _tree_digest(reference_dir)
    assert len([name for name in got if name.endswith((".png", ".jpg"))]) == 50
    assert got == expected


def test_killed_training_resumes_from_its_checkpoint_and_killed_prescoring_scores_each_image_once(
        celery_worker_factory, curator_user, settings):
    from aesplatform.modeling import services
    from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun, TrainingJob
    from tests.unit.test_modeling_support import frozen_version, synthetic_images

    images = synthetic_images(24)
    version = frozen_version(images, user=curator_user)
    first = celery_worker_factory("gpu", app=SLOW_APP,
                                  AESP_FAULT_SLOW="aesplatform.modeling.services:_JobReporter.progress=0.4")
    job = services.training_job_create(
        dataset_version=version, preset="tiny-cpu", created_by=curator_user,
        config={"max_steps": 16, "batch_size": 8, "checkpoint_every": 3, "log_every": 1, "metavoter_steps": 10})
    step = lambda: TrainingJob.objects.get(pk=job.pk).step  # noqa: E731
    wait_for(lambda: step() >= 7, timeout=180, message=f"7 training steps; worker log:\n{first.logs()[-3000:]}")
    first.kill()
    killed_at = step()
    assert TrainingJob.objects.get(pk=job.pk).state == JobState.RUNNING and killed_at < 16

    # The second worker trains at full speed; it pre-scores slowly, so that it can be killed in turn.
    second = celery_worker_factory("gpu", app=SLOW_APP, AESP_FAULT_SLOW="aesplatform.modeling.services:_score_chunk=1.5",
                                   **RESUMING)
    job = wait_for(lambda: TrainingJob.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first(),
                   timeout=240, message=f"the resumed training job; worker log:\n{second.logs()[-3000:]}")
    assert job.state == JobState.SUCCEEDED, job.error + job.log
    curve = [p[0] for p in job.loss_curve]
    assert curve == list(range(1, 17)), curve  # every step once: none lost, none doubled in the record
    resumed_at = int(job.log.split("continuing from the checkpoint of step ")[1].split()[0].rstrip(")"))
    assert 6 <= resumed_at <= killed_at and resumed_at % 3 == 0  # from its checkpoint, not from step 0
    assert f"resumed from step {resumed_at}" in job.log
    model = ModelVersion.objects.get(training_job=job)

    services.model_version_promote(model_version=model, user=curator_user)
    image_ids = [image.pk for image, _ in images]
    run = services.prescore_run_create(created_by=curator_user, image_ids=image_ids, batch_size=1)
    processed = lambda: PrescoreRun.objects.get(pk=run.pk).processed  # noqa: E731
    wait_for(lambda: processed() >= 8, timeout=120, message=f"a first chunk scored; log:\n{second.logs()[-3000:]}")
    second.kill()
    run.refresh_from_db()
    assert run.state == JobState.RUNNING and 8 <= run.processed < 24
    scored_before = dict(Prescore.objects.filter(model_version=model).values_list("image_id", "created_at"))

    third = celery_worker_factory("gpu", **RESUMING)
    run = wait_for(lambda: PrescoreRun.objects.filter(pk=run.pk, state__in=["succeeded", "failed"]).first(),
                   timeout=120, message=f"the resumed pre-scoring; worker log:\n{third.logs()[-3000:]}")
    assert run.state == JobState.SUCCEEDED, run.error
    rows = Prescore.objects.filter(model_version=model)
    assert run.processed == run.total == 24
    assert sorted(rows.values_list("image_id", flat=True)) == sorted(image_ids)  # one row per image
    # what was scored before the kill was kept, not scored again
    assert dict(rows.filter(image_id__in=scored_before).values_list("image_id", "created_at")) == scored_before
