"""Exports on an object store (a real S3-protocol server on loopback): the archive is uploaded as one object, in
parts above the multipart threshold, byte-identical to the archive of the same export on the filesystem;
downloaded whole and by Range (resumed after a cut); an outage during the upload fails the job clearly and leaves
nothing in the bucket, and a resume completes it."""

from __future__ import annotations

import hashlib
import io
import math
import threading
import time

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from aesplatform.catalog.models import Image
from aesplatform.common.object_transfer import object_read_range
from aesplatform.datasets import services
from aesplatform.datasets.models import Export
from tests import factories
from tests.support.datasets import archive_bytes, label_imported, labelled_set

pytestmark = pytest.mark.django_db

TAR = "application/x-tar"


@pytest.fixture
def export_root(settings, tmp_path):
    root = tmp_path / "exports"
    settings.AESP_EXPORT_ROOT = root
    settings.AESP_EXPORT_ROOTS = []
    return root


def big_image(seed: int, side: int = 800):
    """A catalog image of random pixels (a PNG of about 1.9 MB: it does not compress) in the default storage."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    key = default_storage.save(f"images/{sha[:2]}/{sha}.png", ContentFile(data))
    image = factories.ImageFactory(sha256=sha, file=key, format="PNG", source="FFHQ", file_size=len(data),
                                   width=side, height=side, status="imported")
    label_imported(image, overall=round(0.1 + seed / 20, 2))
    return image


@pytest.fixture
def big_version(s3_storage, export_root):
    """A frozen version of 6 large and 10 small images whose files are in the bucket: its archive is about 11.6 MB,
    above the test store's 5 MiB multipart threshold (three parts)."""
    curator = factories.curator()
    labelled_set(8, 2)
    for seed in range(6):
        big_image(seed)
    draft = services.dataset_version_create(created_by=curator, name="big set", split_seed=3, test_ratio=0.25)
    return services.dataset_version_freeze(version=draft), curator


def run_export(version, curator, **options) -> Export:
    export, created = services.export_create(version=version, format="humanbeauty", options=options,
                                             created_by=curator, enqueue=False)
    assert created
    return services.export_run(export_id=export.pk)


def download(client, export, **headers):
    response = client.get(f"/api/exports/{export.pk}/download/", headers=headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def filesystem_archive(settings, version, curator) -> bytes:
    """The archive of the same version and options written on the filesystem (the images copied from the bucket
    into a media folder): what a local export streams."""
    stored = {key: default_storage.open(key, "rb").read() for key in Image.objects.values_list("file", flat=True)}
    settings.STORAGES = {**settings.STORAGES,
                         "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    for key, data in stored.items():
        default_storage.save(key, ContentFile(data))
    # the object-store export holds the one live slot of this version and options: set it aside
    Export.objects.filter(version=version).update(state="failed")
    local = run_export(version, curator)
    assert local.state == "succeeded" and local.path and not local.archive_key, local.error
    return archive_bytes(local)


def test_large_export_is_one_multipart_object_downloaded_whole_and_by_range_like_a_filesystem_export(
        big_version, s3_storage, export_root, curator_client, settings):
    version, curator = big_version
    export = run_export(version, curator)
    assert export.state == "succeeded", export.error
    name = export.archive_key.split("/")[-1]
    assert export.path == "" and export.archive_key == f"exports/{export.pk}/attempt-1/{name}"
    assert export.archive_key.endswith(".tar")
    # the worker's scratch folder is gone: the object is the export
    assert not export_root.exists() or list(export_root.iterdir()) == []
    assert s3_storage.keys("exports/") == [export.archive_key]
    head = s3_storage.client().head_object(Bucket=s3_storage.bucket, Key=export.archive_key)
    parts = math.ceil(export.archive_size / s3_storage.multipart_bytes)
    assert parts >= 2 and head["ContentLength"] == export.archive_size
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # uploaded in parts
    assert s3_storage.multipart_uploads() == []

    whole, data = download(curator_client, export)
    assert whole.status_code == 200 and whole["Content-Type"] == TAR and len(data) == export.archive_size
    etag = whole["ETag"]
    assert whole["Content-Disposition"].endswith(f'"{export.archive_key.split("/")[-1]}"')
    # a range in the middle, a resume guarded by If-Range, a suffix, an impossible range
    middle, body = download(curator_client, export, Range="bytes=5000000-5999999")
    assert middle.status_code == 206 and body == data[5_000_000:6_000_000]
    assert middle["Content-Range"] == f"bytes 5000000-5999999/{len(data)}"
    resumed, body = download(curator_client, export, Range="bytes=1000-", If_Range=etag)
    assert resumed.status_code == 206 and body == data[1000:]
    stale, body = download(curator_client, export, Range="bytes=1000-", If_Range='"export-0-0-x"')
    assert stale.status_code == 200 and body == data
    tail, body = download(curator_client, export, Range="bytes=-100")
    assert tail.status_code == 206 and body == data[-100:]
    beyond, _ = download(curator_client, export, Range=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(data)}"

    # the store goes away before a download: a clear 503, no byte of the archive
    with s3_storage.proxy.outage():
        refused = curator_client.get(f"/api/exports/{export.pk}/download/")
    assert refused.status_code == 503 and refused.json()["code"] == "storage_unavailable"
    assert s3_storage.endpoint_url in refused.json()["detail"]

    # the page's link: the same object, the same rules (its error is a plain-text 503)
    page = Client()
    page.force_login(factories.curator())
    url = reverse("ui:export_download", args=[export.pk])
    linked = page.get(url, headers={"Range": "bytes=100-199", "If-Range": etag})
    assert linked.status_code == 206 and b"".join(linked.streaming_content) == data[100:200]
    with s3_storage.proxy.outage():
        refused = page.get(url)
    assert refused.status_code == 503 and b"unavailable" in refused.content

    # ... and during one: the body stops short; a Range request with If-Range gives exactly the rest
    response = curator_client.get(f"/api/exports/{export.pk}/download/")
    chunks = iter(response.streaming_content)
    received = bytearray(next(chunks))
    s3_storage.proxy.cut()
    try:
        for chunk in chunks:
            received += chunk
    except Exception:  # noqa: BLE001 - the connection to the store was reset: the body is truncated
        pass
    finally:
        s3_storage.proxy.restore()
    assert 0 < len(received) <= len(data)
    rest, body = download(curator_client, export, Range=f"bytes={len(received)}-", If_Range=etag)
    if len(received) < len(data):
        assert rest.status_code == 206
        assert bytes(received) + body == data
    else:  # (everything was already in the socket's buffers when the store went away)
        assert rest.status_code == 416

    # byte for byte the archive the same export streams from a filesystem
    assert data == filesystem_archive(settings, version, curator)


def test_outage_during_upload_fails_clearly_leaves_nothing_in_the_bucket_and_resume_completes(
        big_version, s3_storage, export_root, monkeypatch):
    version, curator = big_version
    real_stream = services.writers_stream
    # into the third part: the first two were handed to the upload (the first 5 MiB, and what the reader buffers
    # ahead, are read before the multipart upload is even created)
    cut_after = 10 * 1024 * 1024 + 512 * 1024

    def uploaded_parts() -> list:
        client = s3_storage.client()
        uploads = client.list_multipart_uploads(Bucket=s3_storage.bucket).get("Uploads", [])
        return [part for upload in uploads for part in client.list_parts(
            Bucket=s3_storage.bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])]

    def stream_with_outage(root, layout, check):
        def check_and_cut(done: int) -> None:
            if done >= cut_after and not timers:
                # a part is stored (the last cannot be: its bytes are being read here) ...
                deadline = time.monotonic() + 30
                while not uploaded_parts() and time.monotonic() < deadline:
                    time.sleep(0.05)
                open_parts.extend(uploaded_parts())
                # ... when the store goes away; it is back 3 s later (while the failed job cleans up)
                timers.append(s3_storage.proxy.outage_for(3.0))
            check(done)

        return real_stream(root, layout, check_and_cut)

    timers: list[threading.Timer] = []
    open_parts: list = []
    monkeypatch.setattr(services, "writers_stream", stream_with_outage)
    export = run_export(version, curator)
    assert timers and 1 <= len(open_parts) <= 2, "the outage did not come between the parts"
    assert export.state == "failed"
    assert "unavailable" in export.error and s3_storage.endpoint_url in export.error, export.error
    assert export.archive_key == "" and export.archive_size is None
    timers[0].join()
    # nothing half-written: no object, no open multipart upload, no scratch folder
    assert s3_storage.keys() == sorted(Image.objects.values_list("file", flat=True))
    assert s3_storage.multipart_uploads() == []
    assert [p for p in export_root.rglob("*")] == []

    monkeypatch.setattr(services, "writers_stream", real_stream)
    services.export_resume(export=export)
    export = services.export_run(export_id=export.pk)
    assert export.state == "succeeded", export.error
    assert s3_storage.keys("exports/") == [export.archive_key] and "/attempt-2/" in export.archive_key
    assert s3_storage.multipart_uploads() == []
    data = b"".join(object_read_range(export.archive_key, 0, export.archive_size - 1))
    assert len(data) == export.archive_size and data[257:262] == b"ustar"


def test_object_store_exports_refuse_folder_only_options(s3_storage, export_root, tmp_path):
    curator = factories.curator()
    labelled_set(6, 2)
    version = services.dataset_version_freeze(
        version=services.dataset_version_create(created_by=curator, name="small", test_ratio=0.25))
    for options, words in (({"archive": False}, "archive=false"), ({"target_dir": str(export_root / "x")},
                                                                    "target_dir")):
        with pytest.raises(services.ServiceError) as refused:
            services.export_create(version=version, format="humanbeauty", options=options, created_by=curator,
                                   enqueue=False)
        assert words in refused.value.message
    assert not Export.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_cancel_during_upload_leaves_nothing_in_the_bucket(big_version, s3_storage, export_root, monkeypatch):
    from django.db import connections

    version, curator = big_version
    real_stream = services.writers_stream
    asked: list[int] = []

    def stream_with_cancel(root, layout, check):
        def cancel_midway(done: int) -> None:
            if done >= 6 * 1024 * 1024 and not asked:
                # the user cancels (another request, committed) while the upload runs
                asked.append(Export.objects.filter(version=version).update(cancel_requested=True))
                connections.close_all()  # this thread's connection only
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # until the job's thread has seen it
                    check(done)
                    time.sleep(0.05)
            check(done)

        return real_stream(root, layout, cancel_midway)

    monkeypatch.setattr(services, "writers_stream", stream_with_cancel)
    export = run_export(version, curator)
    assert asked == [1]
    assert export.state == "cancelled" and export.archive_key == ""
    assert s3_storage.keys("exports/") == [] and s3_storage.multipart_uploads() == []
    assert [p for p in export_root.rglob("*")] == []
