"""The storage layer as code that needs files sees it: one place that knows whether stored files are local.

Everything the platform stores (images, thumbnails, export archives, trained checkpoints) goes through Django's
default storage: the local filesystem (MEDIA_ROOT, one machine) or an S3-compatible object store
(AESP_STORAGE_BACKEND=s3), which web and workers on any host reach without a shared folder.

Code that needs a *file* (torch and PIL open paths, the DataLoader's decode workers, training's jsonl) asks for
`local_copy(name)`: on the filesystem that is the stored file itself; on an object store it is a copy in this
host's bounded cache (AESP_STORAGE_CACHE_DIR, at most AESP_STORAGE_CACHE_BYTES, least recently used evicted),
downloaded once and atomically (a temporary name, then a rename), so a reader never sees half a file and two
processes fetching the same object at once both end with a whole one.

An object store that does not answer (refused or dropped connections, timeouts, 5xx after botocore's own retries)
is `StorageUnavailable`: a ServiceError (503, code "storage_unavailable") whose message names the store and the
cause. Requests answer it as such and change nothing; jobs fail with it or are retried (their services say which),
and resume where they stopped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage

from .exceptions import ServiceError

logger = logging.getLogger(__name__)

# A stored folder (a trained checkpoint: several files loaded together) is uploaded with this file last, listing
# every file's size and sha256; a cached copy of the folder is whole when this file is in it (see LocalCache.tree).
TREE_MANIFEST = "tree-manifest.json"
# A copy used this recently is never evicted: a reader that was just handed its path can still open it.
EVICTION_GRACE_S = 300.0
# Eviction brings the cache down to this fraction of its bound, so that it does not run on every download.
EVICTION_LOW_WATER = 0.9
_PARTIAL = ".partial-"


class StorageUnavailable(ServiceError):
    """The object store did not answer (after the client's retries): nothing was written; try again later."""

    status_code = 503
    code = "storage_unavailable"


def storage_is_local() -> bool:
    """Whether stored files are plain files on this host's filesystem (the default storage is a folder)."""
    return isinstance(default_storage, FileSystemStorage)  # a LazyObject reports the class it wraps


def storage_description() -> str:
    """The store, in words for an error message (no credentials)."""
    if storage_is_local():
        return f"the media folder {default_storage.location}"
    bucket = getattr(default_storage, "bucket_name", None) or "?"
    endpoint = getattr(default_storage, "endpoint_url", None) or "AWS S3"
    return f"the object store {endpoint} (bucket {bucket})"


def storage_unavailable_error(exc: BaseException) -> bool:
    """Whether `exc` says that the store could not be reached or failed on its side (as opposed to a missing key
    or a refused request, which retrying does not fix)."""
    try:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            IncompleteReadError,
            ReadTimeoutError,
        )
    except ImportError:  # no object-store client installed: only local storage
        return False
    if isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError, ReadTimeoutError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = exc.response.get("Error", {}).get("Code", "")
        return status >= 500 or code in {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
    return False


def storage_missing_error(exc: BaseException) -> bool:
    """Whether `exc` says that the stored file does not exist."""
    if isinstance(exc, FileNotFoundError):
        return True
    try:
        from botocore.exceptions import ClientError
    except ImportError:
        return False
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status == 404 or exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}
    return False


@contextmanager
def storage_guard(action: str) -> Iterator[None]:
    """Run a storage operation; an unreachable store becomes StorageUnavailable("... while <action>: <cause>")."""
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as exc:
        if storage_unavailable_error(exc):
            raise StorageUnavailable(
                f"{storage_description()} is unavailable while {action}: {type(exc).__name__}: {exc}. "
                "Nothing was written; try again when it answers."
            ) from exc
        raise


def s3_bucket_and_key():
    """(bucket resource, function: stored name -> object key) on django-storages' S3 backend; None elsewhere.
    The key applies the backend's own cleaning and `location` prefix, so boto3 calls reach the object that the
    Storage API names."""
    bucket = getattr(default_storage, "bucket", None)
    if bucket is None or not hasattr(default_storage, "_normalize_name"):
        return None
    from storages.utils import clean_name

    return bucket, lambda name: default_storage._normalize_name(clean_name(name))


def _checked_name(name: str) -> str:
    """A stored name as a relative path below the cache root (names come from the database, but a cache must never
    be a way out of its folder)."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a stored file name: {name!r}")
    return "/".join(parts)


class LocalCache:
    """Copies of stored files on this host, at most `max_bytes` (least recently used evicted), shared by every
    process that uses the same folder."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max(0, int(max_bytes))
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None  # this process's running estimate; the truth is the folder

    def path_of(self, name: str) -> Path:
        return self.root / _checked_name(name)

    def get(self, name: str, *, size: int | None = None) -> Path:
        """The local copy of `name`, downloaded first when absent (or when its size is not `size`)."""
        target = self.path_of(name)
        try:
            stat = target.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None and (size is None or stat.st_size == size):
            os.utime(target)  # recently used: the eviction keeps it
            return target
        with storage_guard(f"reading {name}"):
            fetched = self._download(name, target)
        self._account(fetched)
        return target

    def tree(self, prefix: str) -> Path:
        """The local copy of the stored folder `prefix` (its files and TREE_MANIFEST, which is uploaded last), fetched
        as one unit: into a temporary folder, every file checked against the manifest's size and sha256, then
        renamed into place; evicted as one unit. FileNotFoundError when the folder is not (completely) stored."""
        import json

        prefix = _checked_name(prefix.rstrip("/"))
        target = self.path_of(prefix)
        marker = target / TREE_MANIFEST
        if marker.is_file():
            os.utime(marker)  # recently used: the eviction keeps the folder
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            partial.mkdir()
            with storage_guard(f"reading {prefix}/"):
                self._download(f"{prefix}/{TREE_MANIFEST}", partial / TREE_MANIFEST)
                try:
                    files = json.loads((partial / TREE_MANIFEST).read_text())["files"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{prefix}/{TREE_MANIFEST} is not a stored folder's manifest: {exc}") from None
                total = 0
                for relative, entry in sorted(files.items()):
                    path = partial / _checked_name(relative)
                    size = self._download(f"{prefix}/{relative}", path)
                    with open(path, "rb") as handle:
                        digest = hashlib.file_digest(handle, "sha256").hexdigest()
                    if size != entry["bytes"] or digest != entry["sha256"]:
                        raise ValueError(f"{prefix}/{relative}: {size} bytes with sha256 {digest[:12]}..., the "
                                         f"manifest says {entry['bytes']} bytes with {entry['sha256'][:12]}...")
                    total += size
            try:
                os.rename(partial, target)
            except OSError:
                if not marker.is_file():  # not another process's complete copy that won the race
                    raise
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        self._account(total)
        return target

    def _download(self, name: str, target: Path) -> int:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            s3 = s3_bucket_and_key()
            if s3 is not None:
                # S3: s3transfer fetches large objects in parallel ranged parts
                bucket, key_of = s3
                try:
                    bucket.Object(key_of(name)).download_file(str(partial), Config=default_storage.transfer_config)
                except Exception as exc:
                    if storage_missing_error(exc):
                        raise FileNotFoundError(errno.ENOENT, f"stored file missing: {name}") from exc
                    raise
            else:
                with default_storage.open(name, "rb") as source, open(partial, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
            size = partial.stat().st_size
            os.replace(partial, target)
            return size
        finally:
            partial.unlink(missing_ok=True)

    def _account(self, added: int) -> None:
        with self._lock:
            if self._approx_bytes is None:
                self._approx_bytes = self.used_bytes()
            else:
                self._approx_bytes += added
            over = self._approx_bytes > self.max_bytes
        if over:
            self.evict()

    def used_bytes(self) -> int:
        return sum(size for _path, size, _mtime in self._files())

    def _files(self) -> Iterator[tuple[Path, int, float]]:
        """What the eviction weighs and removes: (path, bytes, last use). A stored folder's copy (it holds
        TREE_MANIFEST, whose time is its last use) and a folder being fetched are one unit each."""
        for folder, dirs, names in os.walk(self.root):
            here = Path(folder)
            if here != self.root and (TREE_MANIFEST in names or _PARTIAL in here.name or _EVICTING in here.name):
                dirs[:] = []  # one unit: not walked into
                marker = here / TREE_MANIFEST
                try:
                    mtime = (marker if marker.is_file() else here).stat().st_mtime
                except FileNotFoundError:
                    continue
                yield here, _tree_bytes(here), mtime
                continue
            for file_name in names:
                path = here / file_name
                try:
                    stat = path.stat()
                except FileNotFoundError:  # evicted or renamed by another process meanwhile
                    continue
                yield path, stat.st_size, stat.st_mtime

    def evict(self) -> int:
        """Remove least recently used copies until the cache is under EVICTION_LOW_WATER of its bound; copies used
        in the last EVICTION_GRACE_S stay (a working set larger than the bound keeps the cache over it, for the
        time it is in use). Returns the bytes removed."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".evict.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process evicts at a time; the others' next estimate rescans
            files = [f for f in self._files() if f[0].name != ".evict.lock"]
            total = sum(size for _p, size, _m in files)
            goal = int(self.max_bytes * EVICTION_LOW_WATER)
            now = time.time()
            removed = 0
            for path, size, mtime in sorted(files, key=lambda f: f[2]):
                if total - removed <= goal:
                    break
                stale_partial = _PARTIAL in path.name and now - mtime > 3600
                if now - mtime < EVICTION_GRACE_S and not stale_partial:
                    break  # sorted by age: everything after this one is at least as recent
                if _PARTIAL in path.name and not stale_partial:
                    continue  # a download in progress
                _remove_unit(path)
                removed += size
        with self._lock:
            self._approx_bytes = total - removed
        if removed:
            logger.info("storage cache %s: evicted %d bytes (bound %d)", self.root, removed, self.max_bytes)
        return removed


_EVICTING = ".evicting-"


def _tree_bytes(folder: Path) -> int:
    total = 0
    for parent, _dirs, names in os.walk(folder):
        for file_name in names:
            try:
                total += (Path(parent) / file_name).stat().st_size
            except FileNotFoundError:
                continue
    return total


def _remove_unit(path: Path) -> None:
    """Remove a cached file, or a cached folder as a whole: renamed away first, so that no reader finds half of it
    under its name."""
    if path.is_dir() and not path.is_symlink():
        doomed = path
        if _EVICTING not in path.name:
            doomed = path.with_name(f"{path.name}{_EVICTING}{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, doomed)
            except FileNotFoundError:
                return
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_CACHES: dict[tuple[str, int, str], LocalCache] = {}
_CACHES_LOCK = threading.Lock()


def _storage_tag() -> str:
    """One cache folder per store (bucket), so that copies of two stores' same-named keys never mix."""
    bucket = getattr(default_storage, "bucket_name", None) or "default"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in bucket)


def storage_cache() -> LocalCache:
    key = (str(settings.AESP_STORAGE_CACHE_DIR), int(settings.AESP_STORAGE_CACHE_BYTES), _storage_tag())
    with _CACHES_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            cache = _CACHES[key] = LocalCache(Path(key[0]) / key[2], key[1])
        return cache


def local_copy(name: str, *, size: int | None = None) -> Path:
    """A path on this host holding the stored file `name`: the file itself on local storage, else a cached copy.

    FileNotFoundError when it is not stored; StorageUnavailable when the store does not answer. `size`: the size
    the caller knows (a cached copy of another size is fetched again)."""
    if storage_is_local():
        return Path(default_storage.path(name))
    return storage_cache().get(name, size=size)


# --- many files at once, streams, and jobs that an outage stopped ------------------------------------------------


def local_copies(names: list[str], *, max_workers: int = 8) -> dict[str, Path | None]:
    """Local paths of many stored files, fetched in parallel into the cache (one round trip per object is the
    cost on an object store, so a chunk of images is fetched by `max_workers` threads at once).

    Returns {name: path}, with None for a name that is not stored (a missing file: the caller decides what that
    means). StorageUnavailable as soon as one fetch finds the store unreachable (the others are not waited for
    longer than their own attempts). On local storage: the stored files themselves, None where absent."""
    unique = list(dict.fromkeys(names))
    if storage_is_local():
        paths = {name: Path(default_storage.path(name)) for name in unique}
        return {name: path if path.is_file() else None for name, path in paths.items()}
    cache = storage_cache()

    def fetch(name: str) -> Path | None:
        try:
            return cache.get(name)
        except FileNotFoundError:
            return None

    if len(unique) <= 1 or max_workers <= 1:
        return {name: fetch(name) for name in unique}
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, Path | None] = {}
    with ThreadPoolExecutor(max_workers=min(max_workers, len(unique)), thread_name_prefix="storage-fetch") as pool:
        futures = {pool.submit(fetch, name): name for name in unique}
        try:
            for future, name in futures.items():
                out[name] = future.result()
        except BaseException:
            for future in futures:
                future.cancel()  # the queued fetches do not start; the running ones end with their attempts
            raise
    return out


def storage_open_stream(name: str):
    """A readable binary file-like object over the stored file `name`, read as it is consumed (an object store's
    response body: a large file is never held in memory whole), and its size in bytes.

    FileNotFoundError when it is not stored; StorageUnavailable when the store does not answer."""
    if storage_is_local():
        handle = default_storage.open(name, "rb")
        return handle, handle.size
    with storage_guard(f"reading {name}"):
        bucket, key_of = s3_bucket_and_key()
        try:
            response = bucket.Object(key_of(name)).get()
        except Exception as exc:
            if storage_missing_error(exc):
                raise FileNotFoundError(errno.ENOENT, f"stored file missing: {name}") from exc
            raise
    return _GuardedBody(response["Body"], name), int(response["ContentLength"])


class _GuardedBody:
    """An object store's response body whose read errors name the store (a connection dropped mid-file)."""

    def __init__(self, body, name: str) -> None:
        self._body, self._name = body, name

    def read(self, amount: int | None = -1) -> bytes:
        with storage_guard(f"reading {self._name}"):
            return self._body.read(None if amount is None or amount < 0 else amount)

    def close(self) -> None:
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def storage_retry_delay(retries: int) -> float | None:
    """Seconds before the next try of a job that an unreachable store stopped, after `retries` such retries
    (doubling from AESP_STORAGE_RETRY_S, at most 10 minutes); None once AESP_STORAGE_JOB_RETRIES are spent: the
    job then fails with the store's message (and can be resumed)."""
    if retries >= int(settings.AESP_STORAGE_JOB_RETRIES):
        return None
    return min(float(settings.AESP_STORAGE_RETRY_S) * 2**retries, 600.0)


def storage_job_stopped(*, job, error: StorageUnavailable, retry_in_s: float | None) -> bool:
    """A job that an unreachable store stopped (what it committed stays; nothing was marked broken). With
    `retry_in_s` (its task queues it again after that long, see storage_retry_delay): back to pending with the
    store's message, returns True. None (no retries left, or run outside a task): failed with that message
    (resumable), returns False."""
    from . import jobs

    if retry_in_s is not None:
        jobs.job_release(job=job, error=f"{error.message} Retrying in {retry_in_s:.0f} s.", retry_in_s=retry_in_s)
        logger.warning("%s %s released, the store is unavailable (retry in %.0f s): %s", type(job).__name__, job.pk,
                       retry_in_s, error.message)
        return True
    jobs.job_fail(job=job, error=f"{error.message} Resume the job when the store answers again.")
    return False


def stored_file_response(name: str, *, content_type: str, missing: str = "The stored file is missing."):
    """A FileResponse streaming a stored file as it is read (from the media folder, or the object store's
    response body: never loaded whole), with its Content-Length. Not stored: a 404 with `missing`; an object store
    that does not answer: StorageUnavailable (a 503 naming the store), never a 404 calling a reachable file
    missing."""
    from django.core.exceptions import SuspiciousFileOperation
    from django.http import FileResponse
    from rest_framework.exceptions import NotFound

    try:
        if not name:
            raise FileNotFoundError(name)
        handle, size = storage_open_stream(name)
    except (OSError, SuspiciousFileOperation, ValueError):  # missing, or a local file that cannot be opened
        raise NotFound(missing) from None
    response = FileResponse(handle, content_type=content_type)
    response["Content-Length"] = str(size)
    return response


def storage_walk(prefix: str) -> Iterator[tuple[str, int, float]]:
    """(name, size, modified as a Unix time) of every stored file under `prefix` ("images/"), from the store's
    listing (one request per 1,000 objects; no request per file)."""
    prefix = prefix.strip("/") + "/"
    if storage_is_local():
        root = Path(default_storage.location)
        for folder, _dirs, names in os.walk(root / prefix):
            for file_name in names:
                path = Path(folder) / file_name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                yield path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime
        return
    with storage_guard(f"listing {prefix}"):
        bucket, key_of = s3_bucket_and_key()
        location = (getattr(default_storage, "location", "") or "").strip("/")
        for obj in bucket.objects.filter(Prefix=key_of(prefix)):
            name = obj.key[len(location) + 1:] if location else obj.key
            yield name, int(obj.size), obj.last_modified.timestamp()


class CacheWarmer:
    """Fetches the next chunk's files into this host's cache in the background while the current chunk is
    worked on, so that fetching and scoring overlap (the next chunk's local_copies then finds them local). Best
    effort: a failure here is left for that real fetch to report. Nothing to do on local storage."""

    def __init__(self, *, max_workers: int = 8) -> None:
        self.max_workers = max_workers
        self._pool = None
        if not storage_is_local():
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage-warm")

    @property
    def active(self) -> bool:
        """Whether warming up does anything (an object store); callers skip computing the names otherwise."""
        return self._pool is not None

    def warm(self, names: list[str]) -> None:
        if self._pool is not None and names:
            self._pool.submit(self._fetch, list(names))

    def _fetch(self, names: list[str]) -> None:
        try:
            local_copies(names, max_workers=self.max_workers)
        except Exception as exc:  # noqa: BLE001 - the chunk's own fetch reports it
            logger.info("storage cache warm-up stopped: %s", exc)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> CacheWarmer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
