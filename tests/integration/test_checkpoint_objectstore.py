"""A trained checkpoint on the object store: uploaded by the training side, registered with its prefix, and loaded
by a worker that shares no folder with it (its own var, media and cache folders) to pre-score."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aesplatform.common.exceptions import ConflictError
from aesplatform.common.models import JobState
from aesplatform.common.objectstore import TREE_MANIFEST
from aesplatform.modeling import checkpoints, services
from aesplatform.modeling.models import Prescore, PrescoreRun, TrainingJob
from tests import factories
from tests.conftest import wait_for
from tests.support.modeling import frozen_version, synthetic_images


def tiny_checkpoint(directory: Path) -> Path:
    from model_core.model import ModelConfig, build_model, save_model

    save_model(build_model(ModelConfig(train_vision=True, head_dropout=0.0), device="cpu", precision="fp32"),
               directory)
    return directory


@pytest.mark.django_db(transaction=True)
def test_stored_checkpoint_is_loaded_by_a_worker_without_the_training_folder(celery_worker_factory, s3_storage,
                                                                             tmp_path):
    user = factories.curator()
    images = synthetic_images(4, size=(32, 32))  # their files are in the bucket
    version = frozen_version(images, user=user)
    job = TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=user,
                                     state=JobState.SUCCEEDED, config={"train": {}})
    job.output_dir = str(tmp_path / "training" / f"job-{job.pk}")
    job.save(update_fields=["output_dir"])
    tiny_checkpoint(checkpoints.job_final_checkpoint(job))

    # not uploaded yet: on an object store it cannot be registered (no other host could load it)
    with pytest.raises(ConflictError) as refused:
        services.model_version_register(training_job=job)
    assert refused.value.code == "checkpoint_missing"
    prefix = checkpoints.checkpoint_upload(job=job)
    stored = s3_storage.keys(prefix)
    assert {prefix + TREE_MANIFEST, prefix + "config.json", prefix + "model.safetensors"} <= set(stored)
    model = services.model_version_register(training_job=job)
    assert model.checkpoint_key == prefix == f"models/job-{job.pk}/"

    # the training host's folder is gone: only the store has the checkpoint
    shutil.rmtree(tmp_path / "training")
    model = services.model_version_promote(model_version=model, user=user)
    assert model.promoted

    own = tmp_path / "gpu-host"
    for name in ("var", "media", "cache", "training"):
        (own / name).mkdir(parents=True)
    worker = celery_worker_factory(
        queues="gpu", **s3_storage.env(), AESP_VAR_DIR=str(own / "var"), DJANGO_MEDIA_ROOT=str(own / "media"),
        AESP_STORAGE_CACHE_DIR=str(own / "cache"), AESP_TRAINING_ROOT=str(own / "training"),
    )
    run = services.prescore_run_create(created_by=user, image_ids=[image.pk for image, _ in images],
                                       model_version=model, batch_size=4)
    run = wait_for(lambda: PrescoreRun.objects.filter(pk=run.pk, state__in=["succeeded", "failed"]).first(),
                   timeout=180, message="the pre-scoring run to end")
    assert run.state == JobState.SUCCEEDED, (run.error, worker.logs()[-3000:])
    assert Prescore.objects.filter(model_version=model).count() == 4
    # the worker loaded the checkpoint from its own cache, fetched whole
    cached = [p.parent for p in (own / "cache").rglob(TREE_MANIFEST)]
    assert [p.relative_to(own / "cache").as_posix().split("/", 1)[1] for p in cached] == [prefix.rstrip("/")]
    assert (cached[0] / "model.safetensors").is_file()
    assert not list((own / "media").rglob("*.safetensors"))
