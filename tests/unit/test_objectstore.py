"""The storage layer against a real S3-protocol server: local copies, the bounded cache, outages, multipart."""

from __future__ import annotations

import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from aesplatform.common import objectstore
from aesplatform.common.objectstore import LocalCache, StorageUnavailable, local_copy, storage_guard


def test_filesystem_storage_local_copy_is_the_stored_file_itself(settings, tmp_path):
    name = default_storage.save("images/ab/x.bin", ContentFile(b"pixels"))
    path = local_copy(name)
    assert path == settings.MEDIA_ROOT / name
    assert objectstore.storage_is_local()


def test_s3_local_copy_downloads_once_into_the_cache(s3_storage, settings):
    name = default_storage.save("images/ab/abc.jpg", ContentFile(b"jpeg bytes"))
    assert s3_storage.keys() == ["images/ab/abc.jpg"]
    assert not objectstore.storage_is_local()
    path = local_copy(name)
    assert path.read_bytes() == b"jpeg bytes"
    assert str(path).startswith(str(settings.AESP_STORAGE_CACHE_DIR))
    # a second read is served from the cache: it works while the store is unreachable
    with s3_storage.proxy.outage():
        assert local_copy(name).read_bytes() == b"jpeg bytes"


def test_s3_missing_object_is_file_not_found_and_leaves_no_partial_file(s3_storage, settings):
    with pytest.raises(FileNotFoundError):
        local_copy("images/no/such.jpg")
    leftovers = [p for p in settings.AESP_STORAGE_CACHE_DIR.rglob("*") if p.is_file()]
    assert leftovers == []


def test_s3_outage_is_storage_unavailable_naming_the_store(s3_storage, settings):
    default_storage.save("images/cd/x.jpg", ContentFile(b"x"))
    with s3_storage.proxy.outage(), pytest.raises(StorageUnavailable) as raised:
        local_copy("images/cd/x.jpg")
    assert s3_storage.endpoint_url in raised.value.message and "unavailable" in raised.value.message
    assert raised.value.status_code == 503
    assert [p for p in settings.AESP_STORAGE_CACHE_DIR.rglob("*") if p.is_file()] == []


def test_s3_brief_outage_is_ridden_out_by_the_client_retries(s3_storage, settings):
    # 6 attempts with botocore's jittered exponential backoff outlast a 0.3 s outage (the sum of the first five
    # waits is below 0.3 s with a probability of about 1e-6)
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage.storages_setting(max_attempts=6)}
    default_storage.save("images/ef/y.jpg", ContentFile(b"y" * 1000))
    s3_storage.proxy.outage_for(0.3)
    assert local_copy("images/ef/y.jpg").read_bytes() == b"y" * 1000


def test_s3_large_object_is_uploaded_in_parts_and_read_back_whole(s3_storage):
    data = os.urandom(11 * 1024 * 1024)  # > the 5 MiB multipart threshold of the test store: three parts
    name = default_storage.save("exports/big.bin", ContentFile(data))
    head = s3_storage.client().head_object(Bucket=s3_storage.bucket, Key=name)
    assert head["ETag"].strip('"').endswith("-3")  # S3's ETag of a multipart object: "<md5 of md5s>-<parts>"
    assert local_copy(name).read_bytes() == data
    assert s3_storage.multipart_uploads() == []


def test_storage_guard_passes_other_errors_through():
    with pytest.raises(KeyError), storage_guard("testing"):
        raise KeyError("not a storage error")


def test_cache_evicts_least_recently_used_copies_past_its_bound(s3_storage, tmp_path, monkeypatch):
    monkeypatch.setattr(objectstore, "EVICTION_GRACE_S", 0.0)
    cache = LocalCache(tmp_path / "cache", max_bytes=3000)
    for i in range(4):
        default_storage.save(f"images/00/{i}.bin", ContentFile(bytes([i]) * 1000))
    first = cache.get("images/00/0.bin")
    old = time.time() - 100
    os.utime(first, (old, old))
    for i in range(1, 4):
        cache.get(f"images/00/{i}.bin")
    assert not first.exists()  # the oldest went
    assert cache.used_bytes() <= 3000
    assert cache.get("images/00/0.bin").read_bytes() == b"\x00" * 1000  # and comes back when needed


def test_cache_refuses_names_that_leave_its_folder(tmp_path):
    cache = LocalCache(tmp_path / "cache", max_bytes=10)
    for name in ("../etc/passwd", "/abs", "a/../../b", "a//b", ""):
        with pytest.raises(ValueError):
            cache.path_of(name)
