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
            bucket = getattr(default_storage, "bucket", None)
            if bucket is not None and hasattr(default_storage, "_normalize_name"):
                # S3: s3transfer fetches large objects in parallel ranged parts
                from storages.utils import clean_name

                key = default_storage._normalize_name(clean_name(name))
                try:
                    bucket.Object(key).download_file(str(partial), Config=default_storage.transfer_config)
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
