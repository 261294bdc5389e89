"""Training on an object store: the final checkpoint is uploaded before the job succeeds, the model version records
its prefix, and loading the model takes the stored copy (the training folder is not needed any more)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aesplatform.common.models import JobState
from aesplatform.common.objectstore import TREE_MANIFEST, local_copy
from aesplatform.datasets import writers
from aesplatform.datasets.services import export_rows
from aesplatform.modeling import services
from aesplatform.modeling.models import ModelVersion
from tests.support.modeling import FAST, frozen_version, synthetic_images

pytestmark = pytest.mark.django_db


def new_job(version, user, config):
    job = services.training_job_create(dataset_version=version, preset="tiny-cpu", config=config, created_by=user,
                                       enqueue=False)
    # the training records, pointing at this host's cached copies of the stored images (how the training worker
    # reads images from the store is not what this test is about)
    data = Path(job.output_dir) / "data"
    data.mkdir(parents=True)
    writers.write_training_records(data, export_rows(version), image_path=lambda row: str(local_copy(row.image_file)))
    return job


def test_training_uploads_its_checkpoint_before_succeeding_and_the_model_loads_from_the_store(
        s3_storage, curator_user, settings, tmp_path):
    settings.AESP_TRAINING_ROOT = tmp_path / "training"
    version = frozen_version(synthetic_images(10, size=(32, 32)), user=curator_user)
    job = services.training_job_run(job_id=new_job(version, curator_user, FAST).pk)
    assert job.state == JobState.SUCCEEDED, job.error
    assert f"checkpoint stored under models/job-{job.pk}/" in job.log
    model = ModelVersion.objects.get(training_job=job)
    assert model.checkpoint_key == f"models/job-{job.pk}/"
    stored = s3_storage.keys(model.checkpoint_key)
    assert {f"models/job-{job.pk}/{n}" for n in (TREE_MANIFEST, "config.json", "model.safetensors")} <= set(stored)

    shutil.rmtree(settings.AESP_TRAINING_ROOT)  # the training folder is gone: the store has the checkpoint
    scorer = services.load_scorer(model, device="cpu")
    assert scorer is not None
    assert (settings.AESP_STORAGE_CACHE_DIR / s3_storage.bucket / f"models/job-{job.pk}" / TREE_MANIFEST).is_file()

    # fine-tuning from the stored model: the job is created from the checkpoint's cached copy, and the training
    # worker starts from its own copy (here: the cache emptied in between, as on another host)
    follow_up = new_job(version, curator_user, {**FAST, "init_model_version": model.pk})
    shutil.rmtree(settings.AESP_STORAGE_CACHE_DIR / s3_storage.bucket / "models")
    follow_up = services.training_job_run(job_id=follow_up.pk)
    assert follow_up.state == JobState.SUCCEEDED, follow_up.error
    assert (settings.AESP_STORAGE_CACHE_DIR / s3_storage.bucket / f"models/job-{job.pk}" / TREE_MANIFEST).is_file()
    assert ModelVersion.objects.get(training_job=follow_up).checkpoint_key == f"models/job-{follow_up.pk}/"
