"""Stored folders (trained checkpoints) on a real S3-protocol server: uploaded with their manifest last, fetched
into the bounded cache as one checked unit, evicted as a whole."""

from __future__ import annotations

import json
import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from aesplatform.common import objectstore
from aesplatform.common.object_transfer import object_names, tree_upload
from aesplatform.common.objectstore import TREE_MANIFEST, LocalCache


def make_folder(root, files: dict[str, bytes]):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_stored_folder_is_fetched_whole_and_checked(s3_storage, tmp_path):
    files = {"config.json": b"{}", "model.safetensors": os.urandom(3000), "tokenizer/vocab.txt": b"a\nb\n"}
    manifest = tree_upload(make_folder(tmp_path / "ckpt", files), "models/job-7/")
    assert object_names("models/job-7/") == sorted(f"models/job-7/{n}" for n in [*files, TREE_MANIFEST])
    assert manifest["files"]["model.safetensors"]["bytes"] == 3000
    cache = LocalCache(tmp_path / "cache", max_bytes=10**6)
    folder = cache.tree("models/job-7/")
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {*files, TREE_MANIFEST}
    assert (folder / "model.safetensors").read_bytes() == files["model.safetensors"]
    with s3_storage.proxy.outage():  # a second use is served from the cache
        assert cache.tree("models/job-7/") == folder
    # a file that does not match the manifest: nothing is taken into the cache
    default_storage.save("models/job-8/model.safetensors", ContentFile(b"x" * 10))
    default_storage.save(f"models/job-8/{TREE_MANIFEST}", ContentFile(json.dumps(
        {"files": {"model.safetensors": {"bytes": 10, "sha256": "0" * 64}}}).encode()))
    with pytest.raises(ValueError, match="sha256"):
        cache.tree("models/job-8/")
    # a folder without its manifest (an upload that did not finish) is not stored
    default_storage.save("models/job-9/config.json", ContentFile(b"{}"))
    with pytest.raises(FileNotFoundError):
        cache.tree("models/job-9/")
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == ["job-7"]


def test_cache_evicts_a_stored_folder_as_one_unit(s3_storage, tmp_path, monkeypatch):
    monkeypatch.setattr(objectstore, "EVICTION_GRACE_S", 0.0)
    for job in (1, 2):
        tree_upload(make_folder(tmp_path / f"ckpt{job}", {"a.bin": b"a" * 1500, "sub/b.bin": b"b" * 1500}),
                    f"models/job-{job}/")
    default_storage.save("images/00/x.bin", ContentFile(b"x" * 500))
    cache = LocalCache(tmp_path / "cache", max_bytes=4500)
    first = cache.tree("models/job-1/")
    old = time.time() - 100
    os.utime(first / TREE_MANIFEST, (old, old))  # used long ago (its files' own times do not count)
    image = cache.get("images/00/x.bin")
    second = cache.tree("models/job-2/")  # over the bound: the least recently used unit goes, whole
    assert not first.exists() and second.is_dir() and image.is_file()
    assert not list((tmp_path / "cache" / "models").glob("*evicting*"))
    assert cache.used_bytes() <= 4500
    assert (cache.tree("models/job-1/") / "sub" / "b.bin").read_bytes() == b"b" * 1500  # fetched again when needed
