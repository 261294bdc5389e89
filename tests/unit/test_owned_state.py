"""State that outlives a call has an owner: a process's loaded model, an import's open zip."""

from __future__ import annotations

import io
import zipfile

import pytest

from aesplatform.common.model_cache import LoadedModelCache


def test_the_model_cache_holds_one_model_under_the_key_it_was_loaded_for():
    cache: LoadedModelCache[object] = LoadedModelCache()
    loads = []

    def loader(name):
        return lambda: loads.append(name) or f"model {name}"

    assert cache.get("a", loader("a")) == "model a"
    assert cache.get("a", loader("again")) == "model a" and loads == ["a"]  # the same key: not loaded again
    assert cache.get("b", loader("b")) == "model b"
    assert cache.get("a", loader("a")) == "model a" and loads == ["a", "b", "a"]  # one model at a time
    cache.put("c", "given")
    assert cache.get("c", loader("c")) == "given"
    cache.clear()
    assert cache.get("c", loader("c")) == "model c" and loads[-1] == "c"


def test_a_failed_load_leaves_the_cache_empty():
    cache: LoadedModelCache[str] = LoadedModelCache()
    cache.get("a", lambda: "model a")

    def broken():
        raise RuntimeError("bad checkpoint")

    with pytest.raises(RuntimeError):
        cache.get("b", broken)
    assert cache.get("a", lambda: "reloaded") == "reloaded"  # the old model was dropped before the load


def _zip_in_storage(name: str, members: dict[str, bytes]) -> str:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return default_storage.save(name, ContentFile(buffer.getvalue()))


def test_an_open_archive_reads_members_of_one_zip_after_another_and_closes():
    from aesplatform.catalog.sources import FileSource, ImportLimits, OpenArchive, read_source

    first = _zip_in_storage("first.zip", {"a.jpg": b"A", "b.jpg": b"BB"})
    second = _zip_in_storage("second.zip", {"a.jpg": b"other"})
    limits = ImportLimits(max_image_pixels=10**6, max_file_bytes=100, max_zip_members=10,
                          max_zip_uncompressed_bytes=10**6, max_zip_ratio=100, thumbnail_size=64)

    def member(location, name):
        return FileSource("zip", location, member=name, in_storage=True)

    with OpenArchive() as archives:
        assert read_source(member(first, "a.jpg"), limits, archives=archives) == b"A"
        opened = archives.archive_for(member(first, "b.jpg"))
        assert read_source(member(first, "b.jpg"), limits, archives=archives) == b"BB"
        assert archives.archive_for(member(first, "a.jpg")) is opened  # the same zip stays open
        assert read_source(member(second, "a.jpg"), limits, archives=archives) == b"other"
        assert opened.fp is None  # the first zip was closed when the second was opened
        current = archives.archive_for(member(second, "a.jpg"))
    assert current.fp is None  # and the last one when its owner was done
