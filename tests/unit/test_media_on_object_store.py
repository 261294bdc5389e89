"""Images, thumbnails, imports, image serving, pre-scoring, filter runs and training data on a real S3-protocol
server (tests/support/objectstore.py), including a store that does not answer: a clear 503 for requests, a job
put back to pending (or failed) with the store's message, no row without its file, no image marked broken."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from aesplatform.catalog import services as catalog
from aesplatform.catalog.models import Image, ImageStatus, ImportItem, ImportJob
from aesplatform.common import jobs, objectstore
from aesplatform.common.models import JobState
from aesplatform.common.objectstore import StorageUnavailable, local_copies
from tests import factories
from tests.support.images import jpeg_bytes
from tests.support.scenes import stored_scenes, tiny_run_kwargs

pytestmark = pytest.mark.django_db

PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.998}


def _media_files(settings) -> list:
    return [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()] if settings.MEDIA_ROOT.exists() else []


def _upload_job(user, count: int = 3) -> ImportJob:
    files = [SimpleUploadedFile(f"p{i}.jpg", jpeg_bytes(seed=40 + i), content_type="image/jpeg") for i in range(count)]
    return catalog.import_job_create(created_by=user, kind="upload", files=files, enqueue=False)


# --- the storage layer's additions ------------------------------------------------------------------------------


def test_local_copies_fetch_in_parallel_and_say_none_for_missing_files(s3_storage, settings):
    names = [default_storage.save(f"images/aa/{i}.bin", ContentFile(bytes([i]) * 100)) for i in range(5)]
    paths = local_copies([*names, "images/aa/missing.bin"], max_workers=4)
    assert [paths[n].read_bytes() for n in names] == [bytes([i]) * 100 for i in range(5)]
    assert paths["images/aa/missing.bin"] is None
    assert all(str(paths[n]).startswith(str(settings.AESP_STORAGE_CACHE_DIR)) for n in names)
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable):
        local_copies(["images/aa/not-cached.bin", "images/aa/other.bin"], max_workers=2)


def test_storage_retry_delay_doubles_then_gives_up(settings):
    settings.AESP_STORAGE_RETRY_S, settings.AESP_STORAGE_JOB_RETRIES = 10, 3
    assert [objectstore.storage_retry_delay(n) for n in range(4)] == [10, 20, 40, None]


# --- imports ----------------------------------------------------------------------------------------------------


def test_upload_import_on_s3_stores_originals_and_thumbnails_in_the_bucket_only(s3_storage, settings, curator_client):
    files = [SimpleUploadedFile(f"p{i}.jpg", jpeg_bytes(seed=i), content_type="image/jpeg") for i in range(3)]
    answer = curator_client.post("/api/imports/", {"kind": "upload", "files": files}, format="multipart")
    assert answer.status_code == 201, answer.content
    assert len(s3_storage.keys("imports/staging/")) == 3  # staged in the bucket, for a worker on any host
    job = catalog.import_job_run(job_id=answer.json()["id"], processes=0)
    assert job.state == JobState.SUCCEEDED and job.imported_count == 3
    keys = s3_storage.keys()
    for image in Image.objects.all():
        assert image.file.name in keys and image.thumbnail.name in keys
    assert s3_storage.keys("imports/staging/") == []  # the staged uploads are deleted once imported
    assert _media_files(settings) == []


def test_zip_upload_import_on_s3(s3_storage, curator_user, settings):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(2):
            archive.writestr(f"z/{i}.jpg", jpeg_bytes(seed=70 + i))
    upload = SimpleUploadedFile("set.zip", buffer.getvalue(), content_type="application/zip")
    job = catalog.import_job_create(created_by=curator_user, kind="zip", files=[upload], enqueue=False)
    job = catalog.import_job_run(job_id=job.pk, processes=0)
    assert job.state == JobState.SUCCEEDED and job.imported_count == 2
    assert len(s3_storage.keys("images/")) == 2 and s3_storage.keys("imports/") == []
    assert _media_files(settings) == []


def test_upload_while_the_store_is_down_is_a_clear_503_and_leaves_no_job(s3_storage, curator_client):
    files = [SimpleUploadedFile("p.jpg", jpeg_bytes(seed=3), content_type="image/jpeg")]
    with s3_storage.proxy.outage():
        answer = curator_client.post("/api/imports/", {"kind": "upload", "files": files}, format="multipart")
    assert answer.status_code == 503, answer.content
    body = answer.json()
    assert body["code"] == "storage_unavailable"
    assert s3_storage.endpoint_url in body["detail"] and s3_storage.bucket in body["detail"]
    assert not ImportJob.objects.exists() and not ImportItem.objects.exists()
    assert s3_storage.keys() == []


def test_import_job_stopped_by_an_outage_is_released_with_the_message_and_its_retry_completes(s3_storage, settings,
                                                                                             curator_user):
    job = _upload_job(curator_user)
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable):
        catalog.import_job_run(job_id=job.pk, processes=0, storage_retry_s=30)
    job.refresh_from_db()
    assert job.state == JobState.PENDING and "unavailable" in job.error and s3_storage.endpoint_url in job.error
    assert not Image.objects.exists()  # no row without its file
    assert set(job.items.values_list("outcome", flat=True)) == {"pending"}
    # the job sweep leaves it to its task's delayed retry (no second message chasing it)
    settings.AESP_JOB_STALE_S = 1
    assert job.heartbeat_at > timezone.now() + timedelta(seconds=20) and jobs.job_sweep() == {}
    job = catalog.import_job_run(job_id=job.pk, processes=0, storage_retry_s=30)  # the task's retry
    assert job.state == JobState.SUCCEEDED and job.imported_count == 3 and job.error == ""
    images = list(Image.objects.all())
    keys = s3_storage.keys()
    assert all(i.file.name in keys and i.thumbnail.name in keys for i in images)
    # every object has its row: nothing the failed attempt wrote is left over
    assert sorted(k for k in keys if not k.startswith("imports/")) == sorted(
        [i.file.name for i in images] + [i.thumbnail.name for i in images])


def test_import_pool_processes_on_s3_store_and_report_an_outage_as_such(s3_storage, curator_user, monkeypatch):
    monkeypatch.setattr(catalog, "POOL_MIN_ITEMS", 2)
    job = _upload_job(curator_user, count=4)
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable):
        catalog.import_job_run(job_id=job.pk, processes=2, storage_retry_s=30)
    job.refresh_from_db()
    assert job.state == JobState.PENDING and "unavailable" in job.error and not Image.objects.exists()
    job = catalog.import_job_run(job_id=job.pk, processes=2)
    assert job.state == JobState.SUCCEEDED and job.imported_count == 4
    assert len(s3_storage.keys("images/")) == 4 and len(s3_storage.keys("thumbs/")) == 4


def test_import_job_without_retries_left_fails_with_the_message_and_resumes(s3_storage, curator_user):
    job = _upload_job(curator_user, count=2)
    with s3_storage.proxy.outage():
        job = catalog.import_job_run(job_id=job.pk, processes=0)
    assert job.state == JobState.FAILED and "unavailable" in job.error and "Resume" in job.error
    assert not Image.objects.exists()
    catalog.import_job_resume(job=job)
    job = catalog.import_job_run(job_id=job.pk, processes=0)
    assert job.state == JobState.SUCCEEDED and job.imported_count == 2


# --- serving ----------------------------------------------------------------------------------------------------


def test_image_file_and_thumbnail_stream_from_s3_and_an_outage_is_a_503_not_a_404(s3_storage, curator_client):
    image = factories.ImageFactory()
    data = jpeg_bytes(seed=5)
    default_storage.save(image.file.name, ContentFile(data))
    default_storage.save(image.thumbnail.name, ContentFile(b"thumb"))
    answer = curator_client.get(f"/api/images/{image.pk}/file/")
    assert answer.status_code == 200 and answer.streaming
    assert b"".join(answer.streaming_content) == data and answer["Content-Length"] == str(len(data))
    assert b"".join(curator_client.get(f"/api/images/{image.pk}/thumbnail/").streaming_content) == b"thumb"
    with s3_storage.proxy.outage():
        down = curator_client.get(f"/api/images/{image.pk}/file/")
    assert down.status_code == 503 and down.json()["code"] == "storage_unavailable"
    assert s3_storage.endpoint_url in down.json()["detail"]
    missing = factories.ImageFactory()
    assert curator_client.get(f"/api/images/{missing.pk}/file/").status_code == 404


def test_assignment_image_on_s3_and_during_an_outage(s3_storage, annotator_user, annotator_client):
    from tests.unit.test_import_api import lease_to

    image = factories.ImageFactory()
    default_storage.save(image.file.name, ContentFile(b"\xff\xd8\xff jpeg"))
    lease_to(image, annotator_user)
    from aesplatform.annotation.models import Assignment

    url = f"/api/assignments/{Assignment.objects.get().pk}/image/"
    answer = annotator_client.get(url)
    assert answer.status_code == 200 and b"".join(answer.streaming_content) == b"\xff\xd8\xff jpeg"
    with s3_storage.proxy.outage():
        down = annotator_client.get(url)
    assert down.status_code == 503 and down.json()["code"] == "storage_unavailable"


# --- filter runs ------------------------------------------------------------------------------------------------


def test_filter_run_on_s3_outage_releases_the_run_marks_nothing_broken_and_the_retry_scores_all(s3_storage,
                                                                                              curator_user):
    from aesplatform.curation import services as curation
    from aesplatform.curation.models import FilterResult

    images = stored_scenes(4)
    run = curation.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable):
        curation.filter_run_execute(run_id=run.pk, num_workers=0, storage_retry_s=30)
    run.refresh_from_db()
    assert run.state == JobState.PENDING and "unavailable" in run.error
    assert not FilterResult.objects.filter(run=run, scored_at__isnull=False).exists()
    assert not Image.objects.filter(status=ImageStatus.BROKEN).exists()
    run = curation.filter_run_execute(run_id=run.pk, num_workers=0, storage_retry_s=30)
    assert run.state == JobState.SUCCEEDED
    assert not FilterResult.objects.filter(run=run).exclude(error="").exists()
    assert set(Image.objects.values_list("status", flat=True)) == {ImageStatus.FILTERED}


def test_filter_run_on_s3_marks_an_image_whose_object_is_gone_broken(s3_storage, curator_user):
    from aesplatform.curation import services as curation
    from aesplatform.curation.models import FilterResult

    images = stored_scenes(3)
    default_storage.delete(images[1].file.name)
    run = curation.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
    run = curation.filter_run_execute(run_id=run.pk, num_workers=0)
    assert run.state == JobState.SUCCEEDED
    assert FilterResult.objects.get(run=run, image=images[1]).error.startswith("file missing")
    assert Image.objects.get(pk=images[1].pk).status == ImageStatus.BROKEN
    assert Image.objects.filter(status=ImageStatus.FILTERED).count() == 2


# --- pre-scoring ------------------------------------------------------------------------------------------------

_TINY_MODEL: list[str] = []


def tiny_model_dir() -> str:
    """A model_core checkpoint of the tiny model (random weights, saved once per test process)."""
    if not _TINY_MODEL:
        import tempfile

        import torch

        from model_core.model import ModelConfig, build_model, save_model

        torch.manual_seed(0)
        directory = tempfile.mkdtemp(prefix="aesp-tiny-model-")
        save_model(build_model(ModelConfig(), device="cpu", precision="fp32"), directory)
        _TINY_MODEL.append(directory)
    return _TINY_MODEL[0]


def test_prescoring_on_s3_outage_releases_the_run_marks_nothing_broken_and_the_retry_scores_all(s3_storage,
                                                                                              curator_user):
    from aesplatform.modeling import services as modeling
    from aesplatform.modeling.models import ModelVersion, Prescore

    images = stored_scenes(3, status=ImageStatus.APPROVED)
    gone = stored_scenes(1, start=10, status=ImageStatus.APPROVED)[0]
    default_storage.delete(gone.file.name)
    version = ModelVersion.objects.create(name="tiny", checkpoint_path=tiny_model_dir())
    run = modeling.prescore_run_create(created_by=curator_user, model_version=version, batch_size=2,
                                       image_ids=[i.pk for i in [*images, gone]], enqueue=False)
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable):
        modeling.prescore_run_execute(run_id=run.pk, device="cpu", storage_retry_s=30)
    run.refresh_from_db()
    assert run.state == JobState.PENDING and "unavailable" in run.error
    assert not Prescore.objects.exists() and not Image.objects.filter(status=ImageStatus.BROKEN).exists()
    run = modeling.prescore_run_execute(run_id=run.pk, device="cpu", storage_retry_s=30)
    assert run.state == JobState.SUCCEEDED, run.error
    assert set(Prescore.objects.values_list("image_id", flat=True)) == {i.pk for i in images}
    # an object really missing from the store is the image's problem: broken, so that runs stop trying it
    assert list(Image.objects.filter(status=ImageStatus.BROKEN).values_list("pk", flat=True)) == [gone.pk]


def test_prescoring_without_retries_left_fails_with_the_store_message(s3_storage, curator_user):
    from aesplatform.modeling import services as modeling
    from aesplatform.modeling.models import ModelVersion

    images = stored_scenes(2, status=ImageStatus.APPROVED)
    version = ModelVersion.objects.create(name="tiny", checkpoint_path=tiny_model_dir())
    run = modeling.prescore_run_create(created_by=curator_user, model_version=version,
                                       image_ids=[i.pk for i in images], enqueue=False)
    with s3_storage.proxy.outage():
        run = modeling.prescore_run_execute(run_id=run.pk, device="cpu")
    assert run.state == JobState.FAILED and s3_storage.endpoint_url in run.error
    assert not Image.objects.filter(status=ImageStatus.BROKEN).exists()


# --- training data ----------------------------------------------------------------------------------------------


def test_training_data_on_s3_copies_the_images_next_to_the_records_not_into_the_cache(s3_storage, settings,
                                                                                       tmp_path):
    from aesplatform.datasets.services import training_data_write
    from tests.support.modeling import frozen_version, synthetic_images

    version = frozen_version(synthetic_images(5))
    directory = tmp_path / "job" / "data"
    files = training_data_write(version=version, directory=directory)
    records = [json.loads(line) for split in ("train", "test") for line in open(files[split])]
    assert len(records) == 5
    cache = str(settings.AESP_STORAGE_CACHE_DIR)
    for record in records:
        path = record["images"][0]
        assert not path.startswith(cache) and path.startswith(str(tmp_path / "job" / "data.images"))
        with open(path, "rb") as handle:
            assert handle.read(4) == b"\x89PNG"
    # an interrupted run resumes: complete copies are kept, a missing one is fetched again
    first = records[0]["images"][0]
    os.unlink(first)
    for p in files.values():
        os.unlink(p)
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable):
        training_data_write(version=version, directory=directory)
    training_data_write(version=version, directory=directory)
    assert os.path.isfile(first)


# --- leftovers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "filesystem"])
def test_storage_orphans_lists_and_deletes_only_files_nothing_refers_to(backend, request, curator_user):
    from io import StringIO

    from django.core.management import call_command

    if backend == "s3":
        request.getfixturevalue("s3_storage")
    image = factories.ImageFactory()
    for name in (image.file.name, image.thumbnail.name, "images/ff/orphan.jpg", "thumbs/ff/orphan.jpg",
                 "imports/staging/999999/000000.upload"):
        default_storage.save(name, ContentFile(b"x"))
    waiting = _upload_job(curator_user, count=1)  # a pending job: its staged upload is still needed
    listed = StringIO()
    call_command("storage_orphans", "--older-than-hours", "0", stdout=listed)
    orphans = {"images/ff/orphan.jpg", "thumbs/ff/orphan.jpg", "imports/staging/999999/000000.upload"}
    assert set(listed.getvalue().splitlines()[:-1]) == orphans
    call_command("storage_orphans", "--older-than-hours", "24", "--delete", stdout=StringIO())
    assert default_storage.exists("images/ff/orphan.jpg")  # too recent to be anyone's leftover
    call_command("storage_orphans", "--older-than-hours", "0", "--delete", stdout=StringIO())
    assert not any(default_storage.exists(name) for name in orphans)
    assert default_storage.exists(image.file.name) and default_storage.exists(image.thumbnail.name)
    assert default_storage.exists(waiting.items.get().staged_file)


def test_filter_run_on_s3_fetches_the_next_chunk_while_scoring_this_one(s3_storage, curator_user, monkeypatch,
                                                                        settings):
    from aesplatform.curation import services as curation

    settings.AESP_RUN_CHUNK_SIZE = 2  # the worker holds the next chunk while it scores one, and fetches it
    warmed: list[list[str]] = []
    original = objectstore.CacheWarmer.warm
    monkeypatch.setattr(objectstore.CacheWarmer, "warm", lambda self, names: (warmed.append(names),
                                                                             original(self, names))[1])
    images = stored_scenes(5)
    run = curation.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
    assert curation.filter_run_execute(run_id=run.pk, num_workers=0).state == JobState.SUCCEEDED
    files = [i.file.name for i in images]
    assert warmed[:2] == [files[2:4], files[4:5]]  # while chunk 1 was scored, chunk 2 was fetched, and so on


def _evict_once(module, name: str, monkeypatch, path_of) -> list[str]:
    """Wrap module.<name> (a chunk's fetch) so that the first fetched copy is evicted right after the first call,
    as a cache under pressure would do before the image is read."""
    original, evicted = getattr(module, name), []

    def fetch_then_evict(*args, **kwargs):
        result = original(*args, **kwargs)
        if not evicted:
            path = path_of(result)
            os.unlink(path)
            evicted.append(path)
        return result

    monkeypatch.setattr(module, name, fetch_then_evict)
    return evicted


def test_an_evicted_cache_copy_never_marks_an_image_broken(s3_storage, curator_user, monkeypatch):
    from aesplatform.curation import services as curation
    from aesplatform.curation.models import FilterResult
    from aesplatform.modeling import services as modeling
    from aesplatform.modeling.models import ModelVersion, Prescore

    images = stored_scenes(3)
    evicted = _evict_once(curation, "_chunk_items", monkeypatch, lambda result: result[0][0].path)
    run = curation.filter_run_create(created_by=curator_user, image_ids=[i.pk for i in images], batch_size=2,
                                     review_batch_size=10, thresholds=PIXEL_ONLY, **tiny_run_kwargs())
    assert curation.filter_run_execute(run_id=run.pk, num_workers=0).state == JobState.SUCCEEDED
    assert evicted and not FilterResult.objects.filter(run=run).exclude(error="").exists()

    Image.objects.update(status=ImageStatus.APPROVED)
    evicted = _evict_once(modeling, "_chunk_files", monkeypatch, lambda result: result[0][0][1])
    version = ModelVersion.objects.create(name="tiny", checkpoint_path=tiny_model_dir())
    prescore = modeling.prescore_run_create(created_by=curator_user, model_version=version,
                                            image_ids=[i.pk for i in images], enqueue=False)
    assert modeling.prescore_run_execute(run_id=prescore.pk, device="cpu").state == JobState.SUCCEEDED
    assert evicted and Prescore.objects.filter(model_version=version).count() == 3
    assert not Image.objects.filter(status=ImageStatus.BROKEN).exists()
