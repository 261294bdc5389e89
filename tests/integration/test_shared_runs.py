"""Two real Celery workers that share only PostgreSQL, Redis and the object store (an S3-protocol server; each worker
has its own working folder and its own empty media folder, nothing else in common) split a filter run and a
pre-scoring run between them: both score chunks, every image is scored once, and the results are those of the same
runs scored by one worker.

The pre-scoring model is a trained checkpoint on the store too: each worker fetches it into its own cache."""

from __future__ import annotations

import os
import shutil
import socket

import numpy as np
import pytest

from aesplatform.common.models import DIMENSION_FIELDS, ChunkState, JobState
from aesplatform.curation import services as curation
from aesplatform.curation.models import FilterResult, FilterRun, FilterRunChunk
from aesplatform.modeling import services as modeling
from aesplatform.modeling.models import ModelBackend, Prescore, PrescoreRun, PrescoreRunChunk
from tests.conftest import wait_for
from tests.support.faults import SLOW_APP
from tests.support.scenes import stored_scenes, tiny_run_kwargs

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

IMAGES = 40
PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.998}
# Chunks of 4 images (2 filter batches of 2; a pre-scoring call of batch 1 x 8 rounds them up to 8); each batch is
# slowed a little so that the worker holding the run cannot finish it alone before the other one has started.
# Both workers import torch and the models' code before they take a task (the first import takes many seconds here).
SHARED = {"AESP_RUN_HELPERS": "1", "AESP_RUN_CHUNK_SIZE": "4", "AESP_FILTER_NUM_WORKERS": "0",
          "AESP_FAULT_SLOW": "aesplatform.curation.services:_results_write=0.5;"
                             "aesplatform.modeling.services:_score_chunk=2.5",
          "AESP_FAULT_PRELOAD": "torch,open_clip,aesplatform.curation.engine.pipeline,model_core.model,"
                                "model_core.scoring"}
FILTER_FIELDS = ("image_id", "error", "clip_probabilities", "embedding", "face_count", "largest_face_fraction",
                 "blur_variance", "exposure", "pixel_digest")
PRESCORE_FIELDS = ("image_id", "metavoter_score", "lm_score", "regression_score", "uncertainty", *DIMENSION_FIELDS)


@pytest.fixture
def tiny_model_version(s3_storage, curator_user, tmp_path):
    """A trained model_core checkpoint of the tiny model (fixed-seed init) on the object store, registered as a
    model version; the training folder it came from is gone, so the workers fetch it from the store."""
    from aesplatform.modeling import checkpoints
    from aesplatform.modeling.models import TrainingJob
    from model_core.model import ModelConfig, build_model, save_model
    from tests.support.modeling import frozen_version

    job = TrainingJob.objects.create(dataset_version=frozen_version([], user=curator_user), preset="tiny-cpu",
                                     created_by=curator_user, state=JobState.SUCCEEDED, config={"train": {}},
                                     output_dir=str(tmp_path / "training" / "job"))
    save_model(build_model(ModelConfig(), device="cpu"), checkpoints.job_final_checkpoint(job))
    checkpoints.checkpoint_upload(job=job)
    version = modeling.model_version_register(training_job=job, name="tiny")
    shutil.rmtree(tmp_path / "training")
    assert version.checkpoint_key and version.backend == ModelBackend.MODEL_CORE
    return version


def _two_workers(celery_worker_factory, s3_storage, tmp_path):
    workers = []
    for host in ("host-a", "host-b"):
        folder = tmp_path / host  # its own working folder (var dir: logs, the storage cache, static files)
        (folder / "media").mkdir(parents=True)
        workers.append(celery_worker_factory("gpu", app=SLOW_APP, AESP_VAR_DIR=str(folder),
                                             DJANGO_MEDIA_ROOT=str(folder / "media"), **s3_storage.env(), **SHARED))
    for worker in workers:
        wait_for(lambda w=worker: "preloaded" in w.logs(), timeout=180, message=f"{worker.name} to import torch")
    return workers


def _finished(model, pk):
    return model.objects.filter(pk=pk, state__in=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]).first()


def _worker_of(chunk, workers) -> str:
    owners = [w.name for w in workers if chunk.done_by.startswith(f"{w.name}@")]
    assert len(owners) == 1, (chunk.done_by, [w.name for w in workers])
    return owners[0]


def _each_item_once(chunk_rows, keys: list[int]) -> None:
    """The chunks cover the keys, each key in one chunk, and each chunk scored its items once."""
    assert {c.state for c in chunk_rows} == {ChunkState.DONE}
    covered = sorted(k for c in chunk_rows for k in keys if c.first_key <= k <= c.last_key)
    assert covered == sorted(keys)
    assert [c.scored for c in chunk_rows] == [c.size for c in chunk_rows]  # no batch scored twice
    assert sum(c.scored for c in chunk_rows) == len(keys)


@pytest.mark.django_db(transaction=True)
def test_two_workers_split_a_filter_run_and_a_prescoring_run_each_image_once_same_results(
        celery_worker_factory, s3_storage, curator_user, tiny_model_version, settings, tmp_path):
    workers = _two_workers(celery_worker_factory, s3_storage, tmp_path)
    images = stored_scenes(IMAGES)  # into the object store
    image_ids = [i.pk for i in images]
    assert len(s3_storage.keys("images/")) == IMAGES

    # --- the filter run, queued as any other: one worker takes it and asks the other to help
    run = curation.filter_run_create(created_by=curator_user, image_ids=image_ids, batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
    logs = lambda: "\n".join(w.logs()[-2500:] for w in workers)  # noqa: E731
    run = wait_for(lambda: _finished(FilterRun, run.pk), timeout=240, message=f"the filter run; logs:\n{logs()}")
    assert run.state == JobState.SUCCEEDED and run.attempts == 1, run.error
    assert run.processed == run.total == IMAGES
    results = FilterResult.objects.filter(run=run)
    assert not results.filter(scored_at__isnull=True).exists() and not results.exclude(error="").exists()
    filter_chunks = list(FilterRunChunk.objects.filter(run=run).order_by("index"))
    assert len(filter_chunks) == IMAGES // 4
    _each_item_once(filter_chunks, list(results.values_list("id", flat=True)))
    by_worker = {w.name: [c.index for c in filter_chunks if _worker_of(c, workers) == w.name] for w in workers}
    assert all(by_worker.values()), by_worker  # both workers scored chunks
    shared = {r["image_id"]: r for r in results.values(*FILTER_FIELDS)}

    # --- the pre-scoring run of the same images
    prescoring = modeling.prescore_run_create(created_by=curator_user, image_ids=image_ids,
                                              model_version=tiny_model_version, batch_size=1)
    prescoring = wait_for(lambda: _finished(PrescoreRun, prescoring.pk), timeout=240,
                          message=f"the pre-scoring run; logs:\n{logs()}")
    assert prescoring.state == JobState.SUCCEEDED and prescoring.attempts == 1, prescoring.error
    assert prescoring.processed == prescoring.total == IMAGES
    prescore_chunks = list(PrescoreRunChunk.objects.filter(run=prescoring).order_by("index"))
    assert [c.size for c in prescore_chunks] == [8] * (IMAGES // 8)  # whole scoring calls of 8 x batch 1
    _each_item_once(prescore_chunks, image_ids)
    assert {_worker_of(c, workers) for c in prescore_chunks} == {w.name for w in workers}
    rows = Prescore.objects.filter(model_version=tiny_model_version)
    assert sorted(rows.values_list("image_id", flat=True)) == sorted(image_ids)  # one row per image
    shared_scores = {r["image_id"]: r for r in rows.values(*PRESCORE_FIELDS)}
    for worker in workers:
        worker.stop()
        # each read the images and the model from the store into its own cache; its media folder stayed empty
        own = tmp_path / worker.env["AESP_VAR_DIR"]
        assert not any((own / "media").iterdir())
        assert any((own / "cache").rglob("*.jpg")) and any((own / "cache").rglob("model.safetensors"))

    # --- the same runs scored by one worker (this process, the same settings), after the shared ones are removed
    settings.AESP_RUN_CHUNK_SIZE, settings.AESP_RUN_HELPERS = 4, 0
    FilterRun.objects.filter(pk=run.pk).delete()
    alone = curation.filter_run_create(created_by=curator_user, image_ids=image_ids, batch_size=2,
                                       review_batch_size=10, thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs())
    alone = curation.filter_run_execute(run_id=alone.pk, num_workers=0)
    assert alone.state == JobState.SUCCEEDED, alone.error
    assert {c.done_by for c in FilterRunChunk.objects.filter(run=alone)} == {f"{socket.gethostname()}:{os.getpid()}"}
    single = {r["image_id"]: r for r in FilterResult.objects.filter(run=alone).values(*FILTER_FIELDS)}
    assert single.keys() == shared.keys()
    for image_id, row in single.items():
        # CPU, fp32, the same batches: bit for bit (the embedding's float16 bytes, the probabilities' floats)
        assert row == shared[image_id], image_id

    rows.delete()
    again = modeling.prescore_run_create(created_by=curator_user, image_ids=image_ids,
                                         model_version=tiny_model_version, batch_size=1, enqueue=False)
    again = modeling.prescore_run_execute(run_id=again.pk)
    assert again.state == JobState.SUCCEEDED, again.error
    single_scores = {r["image_id"]: r for r in Prescore.objects.filter(model_version=tiny_model_version)
                     .values(*PRESCORE_FIELDS)}
    assert single_scores.keys() == shared_scores.keys()
    for image_id, row in single_scores.items():
        assert row == shared_scores[image_id], image_id
    np.testing.assert_array_equal([single_scores[i]["metavoter_score"] for i in image_ids],
                                  [shared_scores[i]["metavoter_score"] for i in image_ids])
