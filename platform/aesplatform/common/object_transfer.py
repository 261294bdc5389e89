"""Whole objects on the object store: one upload from a stream (multipart above the threshold), ranged reads,
and the removal of everything under a prefix, incomplete multipart uploads included.

Exports (one tar per export) and trained checkpoints (a folder of files under a prefix) go through here when the
default storage is not a local folder (aesplatform.common.objectstore.storage_is_local). On django-storages' S3
backend the calls are boto3's own (s3transfer uploads in parts of AESP_S3_MULTIPART_BYTES and aborts the upload
when a part fails; a ranged GET reads a byte span); another remote storage gets the plain Storage API.

Every call is guarded: a store that does not answer is StorageUnavailable naming the store (objectstore).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from django.core.files import File
from django.core.files.storage import default_storage

from .objectstore import (
    TREE_MANIFEST,
    s3_bucket_and_key,
    storage_guard,
    storage_missing_error,
    storage_unavailable_error,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


class ChunkStream(io.RawIOBase):
    """A readable, non-seekable file over an iterator of byte chunks (what an upload reads from).

    `check(done)` is called after every chunk taken from the iterator (it may raise to stop the upload)."""

    def __init__(self, chunks: Iterator[bytes], *, check: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._check = check
        self.done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            self.done += len(chunk)
            if self._check is not None:
                self._check(self.done)
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def chunk_reader(chunks: Iterator[bytes], *, check: Callable[[int], None] | None = None) -> io.BufferedReader:
    """ChunkStream behind a buffer: read(n) returns n bytes until the end (s3transfer's parts must be whole)."""
    return io.BufferedReader(ChunkStream(chunks, check=check), buffer_size=READ_CHUNK)


def object_upload(name: str, fileobj: IO[bytes]) -> int:
    """Store `fileobj`'s bytes as the object `name` (replacing one of that name); returns the stored size.

    The object exists only once the whole upload has completed (S3: CompleteMultipartUpload); when it fails,
    s3transfer aborts the multipart upload if the store answers (object_purge removes what it could not)."""
    s3 = s3_bucket_and_key()
    with storage_guard(f"uploading {name}"):
        if s3 is None:
            stored = default_storage.save(name, File(fileobj, name=name))
            if stored != name:  # (a storage that renames instead of overwriting)
                raise RuntimeError(f"the storage stored {name} as {stored}")
            return default_storage.size(name)
        bucket, key = s3
        obj = bucket.Object(key(name))
        obj.upload_fileobj(fileobj, Config=default_storage.transfer_config)
        obj.reload()
        return int(obj.content_length)


def object_size(name: str) -> int:
    """The stored size of `name`; FileNotFoundError when there is no such object."""
    s3 = s3_bucket_and_key()
    try:
        with storage_guard(f"reading {name}"):
            if s3 is None:
                return default_storage.size(name)
            bucket, key = s3
            return int(bucket.meta.client.head_object(Bucket=bucket.name, Key=key(name))["ContentLength"])
    except Exception as exc:
        if storage_missing_error(exc) and not storage_unavailable_error(exc):
            raise FileNotFoundError(f"stored object missing: {name}") from exc
        raise


def object_read_range(name: str, start: int, end: int, *, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """Bytes [start, end] (inclusive) of the object `name`, in chunks. The request is made here, before the first
    chunk is asked for (an unavailable store is StorageUnavailable before any byte is sent); a store that fails
    while the bytes flow ends the iteration with its error (the receiver has a truncated body and resumes with a
    Range request)."""
    s3 = s3_bucket_and_key()
    with storage_guard(f"reading {name}"):
        if s3 is None:
            handle = default_storage.open(name, "rb")
            handle.seek(start)
            body, left = handle, end - start + 1
        else:
            bucket, key = s3
            response = bucket.meta.client.get_object(Bucket=bucket.name, Key=key(name), Range=f"bytes={start}-{end}")
            body, left = response["Body"], end - start + 1

    def chunks() -> Iterator[bytes]:
        nonlocal left
        try:
            while left > 0:
                piece = body.read(min(chunk, left))
                if not piece:
                    raise OSError(f"{name}: the store sent {end - start + 1 - left} of {end - start + 1} bytes")
                left -= len(piece)
                yield piece
        except Exception as exc:
            logger.warning("reading %s [%d-%d] stopped with %d bytes left: %s: %s", name, start, end, left,
                           type(exc).__name__, exc)
            raise
        finally:
            body.close()

    return chunks()


def object_names(prefix: str) -> list[str]:
    """The names of the objects under `prefix` (a folder, ending with "/")."""
    s3 = s3_bucket_and_key()
    with storage_guard(f"listing {prefix}"):
        if s3 is None:
            out: list[str] = []

            def walk(folder: str) -> None:
                if not default_storage.exists(folder.rstrip("/")):
                    return
                dirs, files = default_storage.listdir(folder)
                out.extend(f"{folder}{f}" for f in files)
                for d in dirs:
                    walk(f"{folder}{d}/")

            walk(prefix)
            return sorted(out)
        bucket, key = s3
        base = key(prefix.rstrip("/")) + "/"
        strip = len(base) - len(prefix)
        return sorted(o.key[strip:] for o in bucket.objects.filter(Prefix=base))


def object_purge(prefix: str) -> tuple[int, int]:
    """Remove everything under `prefix` (a folder, ending with "/"): the incomplete multipart uploads (aborted)
    and the objects. Returns (uploads aborted, objects deleted)."""
    if not prefix.endswith("/"):
        raise ValueError(f"a prefix ends with '/': {prefix!r}")
    s3 = s3_bucket_and_key()
    with storage_guard(f"removing {prefix}"):
        if s3 is None:
            names = object_names(prefix)
            for name in names:
                default_storage.delete(name)
            return 0, len(names)
        bucket, key = s3
        base = key(prefix.rstrip("/")) + "/"
        aborted = 0
        for upload in bucket.multipart_uploads.filter(Prefix=base):
            upload.abort()
            aborted += 1
        deleted = 0
        keys = [o.key for o in bucket.objects.filter(Prefix=base)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[start:start + 1000]
            bucket.delete_objects(Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            deleted += len(batch)
        return aborted, deleted


def object_purge_patiently(prefix: str, *, wait_s: float) -> bool:
    """object_purge, tried again for up to `wait_s` seconds while the store does not answer (a failed upload's
    parts are removed once it is back). False when it still did not answer: what is left goes at the next
    attempt's purge (or by the bucket's rule for incomplete multipart uploads, docs/storage-exports.md)."""
    deadline = time.monotonic() + wait_s
    pause = 0.25
    while True:
        try:
            object_purge(prefix)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure: retried until the deadline, then reported
            if time.monotonic() + pause > deadline:
                logger.warning("could not remove %s from the store (%s); it is removed at the next attempt",
                               prefix, exc)
                return False
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def tree_upload(directory: Path, prefix: str) -> dict:
    """Store the files under `directory` below `prefix` (a folder, ending with "/"), then TREE_MANIFEST (every
    file's size and sha256) last: a reader (LocalCache.tree) takes the folder as stored only once the manifest is
    there, and checks every file against it. What was under `prefix` before is removed first. Returns the
    manifest."""
    import hashlib
    import json

    if not prefix.endswith("/"):
        raise ValueError(f"a prefix ends with '/': {prefix!r}")
    directory = Path(directory)
    paths = sorted(p for p in directory.rglob("*") if p.is_file())
    names = [p.relative_to(directory).as_posix() for p in paths]
    if TREE_MANIFEST in names:
        raise ValueError(f"{directory} already holds a {TREE_MANIFEST}")
    object_purge(prefix)
    files = {}
    for path, name in zip(paths, names):
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            handle.seek(0)
            size = object_upload(f"{prefix}{name}", handle)
        if size != path.stat().st_size:
            raise OSError(f"{path} changed while it was uploaded ({size} bytes stored)")
        files[name] = {"bytes": size, "sha256": digest}
    manifest = {"format": "aesp-stored-tree", "format_version": 1, "files": files}
    object_upload(f"{prefix}{TREE_MANIFEST}", io.BytesIO(json.dumps(manifest, indent=1, sort_keys=True).encode()))
    logger.info("stored %d file(s), %d bytes, under %s", len(files), sum(f["bytes"] for f in files.values()), prefix)
    return manifest
