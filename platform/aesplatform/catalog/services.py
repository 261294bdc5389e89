"""Writes of the catalog: import jobs and the images they bring in.

The life of an import job:
1. `import_job_create` (web request): checks the request (server paths inside the allowed roots, the zip's
   central directory), stages uploaded files in Django's storage, records the job and queues
   `aesplatform.catalog.tasks.import_job_run` once the transaction commits.
2. `import_job_run` (Celery worker, or in-process): plans the items once (one ImportItem per file, zip member
   or label record; refusals already decided), then processes the pending ones in chunks: a process pool reads,
   decodes, hashes and thumbnails; this process writes the files (content-addressed keys) and then, per chunk
   and in one transaction, the Image rows and the items' outcomes.
Only pending items are ever processed and the counts are derived from the items, so a re-run (the worker was
killed, the task was delivered twice, a curator pressed "resume") finishes the job without duplicates.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage, storages
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils.functional import empty

from aesplatform.annotation.services import ImportedLabel, consensus_imported_add
from aesplatform.common import jobs
from aesplatform.common.exceptions import ServiceError
from aesplatform.common.objectstore import StorageUnavailable, storage_guard, storage_job_stopped
from aesplatform.common.processes import children_allowed
from aesplatform.common.sql import rows_update_by_pk

from .imaging import InspectedImage, extension_for_format
from .models import Image, ImportItem, ImportJob, ImportKind, ImportOutcome
from .sources import (
    FileSource,
    ImportLimits,
    OpenArchive,
    PlannedItem,
    humanbeauty_base,
    inspect_source,
    label_scores,
    open_zip,
    plan_folder,
    plan_humanbeauty,
    plan_zip,
    require_humanbeauty_layout,
    resolve_import_path,
    zip_archive_size,
)

logger = logging.getLogger(__name__)

STAGING_PREFIX = "imports/staging"
CHUNK_SIZE = 64  # items per transaction; also the unit of progress updates
# Below this many pending items a process pool costs more than it saves.
POOL_MIN_ITEMS = 48
IMPORTED_LABEL_METHOD = "imported"
_STORE_ATTEMPTS = 3


# --- creating a job ------------------------------------------------------------------------------------------


def import_job_create(
    *,
    created_by,
    kind: str,
    path: str = "",
    files: Sequence = (),
    source_name: str = "",
    enqueue: bool = True,
) -> ImportJob:
    """Record an import job and queue it.

    kind "upload": `files` are the uploaded files (Django UploadedFile or any File); "folder" / "humanbeauty":
    `path` is a server folder; "zip": either `path` (a server zip) or exactly one uploaded file in `files`.
    `enqueue=False` leaves running it to the caller (`import_job_run(job_id=...)`, e.g. from a command).
    Request-level problems raise ServiceError (a 400).
    """
    if kind not in ImportKind.values:
        raise ServiceError(f"Unknown import kind {kind!r}; expected one of {', '.join(ImportKind.values)}.")
    limits = ImportLimits.from_settings()
    staged_keys: list[str] = []
    try:
        with transaction.atomic():
            job = _import_job_create(
                created_by=created_by, kind=kind, path=path, files=files, source_name=source_name,
                limits=limits, staged_keys=staged_keys,
            )
            if enqueue:
                _enqueue_run(job)
    except BaseException as exc:
        if not getattr(exc, "committed", False):
            # The rows were rolled back; the staged files must go too, or they would be orphans. (A job queue that
            # failed after the commit left the job failed but resumable: its staged files stay.)
            for key in staged_keys:
                _storage_delete_quietly(key)
        raise
    logger.info("import job %s created (%s, %s items)", job.pk, kind, job.total)
    return job


def _import_job_create(*, created_by, kind, path, files, source_name, limits, staged_keys) -> ImportJob:
    job = ImportJob(kind=kind, created_by=created_by, source_name=source_name.strip()[:200])
    if kind == ImportKind.UPLOAD:
        if path:
            raise ServiceError("An upload import takes files, not a server path.", code="path_not_allowed")
        if not files:
            raise ServiceError("Choose at least one file to upload.", code="files_required")
        job.source_name = job.source_name or "upload"
    elif kind == ImportKind.ZIP:
        if bool(path) == bool(files):
            raise ServiceError("A zip import takes either one uploaded zip file or a server path.", code="zip_source")
        if files and len(files) != 1:
            raise ServiceError("Upload exactly one zip file per zip import.", code="zip_source")
        if path:
            resolved = resolve_import_path(path, expect="file")
            job.source_path = str(resolved)
            _check_zip(FileSource("zip", str(resolved)), limits)
            job.source_name = job.source_name or resolved.stem
        else:
            job.source_name = job.source_name or (Path(_safe_upload_name(files[0].name)).stem or "zip upload")
    else:
        if files:
            raise ServiceError(
                f"A {kind} import reads a server folder; it takes no uploaded files.", code="files_not_allowed"
            )
        resolved = resolve_import_path(path, expect="dir")
        job.source_path = str(resolved)
        if kind == ImportKind.HUMANBEAUTY:
            require_humanbeauty_layout(resolved)
        job.source_name = job.source_name or (resolved.name if kind == ImportKind.FOLDER else "HumanBeauty")
    job.full_clean()
    job.save()

    if kind == ImportKind.UPLOAD:
        _stage_uploads(job, files, limits=limits, staged_keys=staged_keys)
    elif kind == ImportKind.ZIP and files:
        key = _staging_zip_key(job.pk)
        staged_keys.append(_storage_save_exact(key, files[0]))
        _check_zip(_zip_source(job), limits)
    return job


def _stage_uploads(job: ImportJob, files: Sequence, *, limits: ImportLimits, staged_keys: list[str]) -> None:
    items: list[ImportItem] = []
    used_names: set[str] = set()
    for index, upload in enumerate(files):
        name = _unique_name(_safe_upload_name(getattr(upload, "name", "") or f"file-{index + 1}"), used_names)
        size = getattr(upload, "size", None)
        if size is not None and size > limits.max_file_bytes:
            items.append(ImportItem(job=job, name=name, outcome=ImportOutcome.ERROR,
                                    message=f"file is larger than the limit of {limits.max_file_bytes:,} bytes"))
            continue
        key = f"{STAGING_PREFIX}/{job.pk}/{index:06d}.upload"
        staged_keys.append(_storage_save_exact(key, upload))
        items.append(ImportItem(job=job, name=name, staged_file=key))
    ImportItem.objects.bulk_create(items, batch_size=1000)
    _save_counts(job)


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _safe_upload_name(name: str) -> str:
    """The client's file name, for the report only: last path component, no control characters."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    base = _UNSAFE_NAME_CHARS.sub("", base).strip()
    return (base or "unnamed")[:255]


def _unique_name(name: str, used: set[str]) -> str:
    candidate, counter = name, 1
    while candidate in used:
        counter += 1
        stem, dot, extension = name.rpartition(".")
        candidate = f"{stem} ({counter}).{extension}" if dot and stem else f"{name} ({counter})"
    used.add(candidate)
    return candidate


def _staging_zip_key(job_id: int) -> str:
    return f"{STAGING_PREFIX}/{job_id}/archive.zip"


def _zip_source(job: ImportJob) -> FileSource:
    if job.source_path:
        return FileSource("zip", job.source_path)
    return FileSource("zip", _staging_zip_key(job.pk), in_storage=True)


def _check_zip(source: FileSource, limits: ImportLimits) -> None:
    with open_zip(source) as archive:
        plan_zip(archive, archive_bytes=zip_archive_size(source), limits=limits)


def _enqueue_run(job: ImportJob) -> None:
    jobs.job_enqueue(job=job)


def import_job_resume(*, job: ImportJob) -> ImportJob:
    """Queue an interrupted, failed or stalled job again; it picks up its pending items only."""
    return jobs.job_resume(job=job)


def import_job_cancel(*, job: ImportJob) -> ImportJob:
    """Stop a job: what is imported stays; the pending items are left pending (a cancelled job is not resumed)."""
    return jobs.job_cancel(job=job)


# --- running a job -------------------------------------------------------------------------------------------


def import_job_run(*, job_id: int, processes: int | None = None, storage_retry_s: float | None = None) -> ImportJob:
    """Run (or finish) an import job. Idempotent: a finished job is left alone, a half-done one resumes.

    `processes`: size of the decode/hash/thumbnail pool (default: the CPUs this process may use; 0 or 1 works
    in this process). A store that does not answer stops the job at the chunk it was writing (that chunk's items
    stay pending, no row is written for them). With `storage_retry_s` (the task queues the job again after that
    many seconds) the job goes back to pending and StorageUnavailable is raised; without, it fails with the
    store's message.
    """
    with jobs.job_running(model=ImportJob, job_id=job_id) as job:
        if job is None:
            return ImportJob.objects.get(pk=job_id)
        limits = ImportLimits.from_settings()
        try:
            _job_source_check(job)
            if not job.items.exists():
                _import_job_plan(job=job, limits=limits)
            stopped = _process_pending(job=job, limits=limits, processes=processes)
        except StorageUnavailable as exc:
            _refresh_counts(job)
            if storage_job_stopped(job=job, error=exc, retry_in_s=storage_retry_s):
                raise
            return jobs.job_refresh(job)
        except ServiceError as exc:
            logger.warning("import job %s failed: %s", job.pk, exc.message)
            return _import_job_finish(job=job, error=exc.message)
        except Exception as exc:
            logger.exception("import job %s failed unexpectedly", job.pk)
            _import_job_finish(job=job, error=f"internal error ({type(exc).__name__}); the job can be resumed")
            raise
        if stopped:
            _refresh_counts(job)
            jobs.job_cancelled(job=job, **{field: getattr(job, field) for field in _COUNT_FIELDS})
            return jobs.job_refresh(job)
        _delete_staging_leftovers(job)
        return _import_job_finish(job=job)


def _import_job_finish(*, job: ImportJob, error: str = "") -> ImportJob:
    _refresh_counts(job)
    counts = {field: getattr(job, field) for field in _COUNT_FIELDS}
    if error:
        jobs.job_fail(job=job, error=error, **counts)
    else:
        jobs.job_succeed(job=job, **counts)
    job = jobs.job_refresh(job)
    logger.info(
        "import job %s %s: %s imported, %s duplicates, %s errors of %s",
        job.pk, job.state, job.imported_count, job.duplicate_count, job.error_count, job.total,
    )
    return job


def _job_source_check(job: ImportJob) -> None:
    """Re-check a server path at run time: it may have changed since the request (or become a symlink)."""
    if job.source_path:
        resolved = resolve_import_path(job.source_path, expect="file" if job.kind == ImportKind.ZIP else "dir")
        if str(resolved) != job.source_path:
            raise ServiceError(
                "The import path now leads somewhere else (a symbolic link changed).", code="path_changed"
            )


@transaction.atomic
def _import_job_plan(*, job: ImportJob, limits: ImportLimits) -> None:
    """Create every item of a folder/zip/HumanBeauty job in one transaction: all of them or none."""
    if job.kind == ImportKind.FOLDER:
        planned = plan_folder(Path(job.source_path))
    elif job.kind == ImportKind.HUMANBEAUTY:
        planned = plan_humanbeauty(Path(job.source_path))
    elif job.kind == ImportKind.ZIP:
        source = _zip_source(job)
        with open_zip(source) as archive:
            planned = plan_zip(archive, archive_bytes=zip_archive_size(source), limits=limits).items
    else:
        planned = []
    ImportItem.objects.bulk_create(
        [_planned_to_item(job, entry) for entry in planned], batch_size=2000, ignore_conflicts=True
    )
    _progress_counts(job)


def _planned_to_item(job: ImportJob, entry: PlannedItem) -> ImportItem:
    return ImportItem(
        job=job, name=entry.name, label=entry.label,
        outcome=ImportOutcome.ERROR if entry.message else ImportOutcome.PENDING, message=entry.message,
    )


@dataclass
class _PendingItem:
    id: int
    name: str
    staged_file: str
    label: dict | None


def _item_file_source(job: ImportJob, item: _PendingItem) -> FileSource:
    if job.kind == ImportKind.UPLOAD:
        return FileSource("storage", item.staged_file)
    if job.kind == ImportKind.ZIP:
        archive = _zip_source(job)
        return FileSource("zip", archive.location, member=item.name, in_storage=archive.in_storage)
    if job.kind == ImportKind.HUMANBEAUTY:
        return FileSource("path", str(humanbeauty_base(Path(job.source_path)) / item.name))
    return FileSource("path", str(Path(job.source_path) / item.name))


def _pending_chunks(job: ImportJob) -> Iterator[list[_PendingItem]]:
    last_id = 0
    while True:
        rows = list(
            job.items.filter(outcome=ImportOutcome.PENDING, id__gt=last_id)
            .order_by("id")
            .values_list("id", "name", "staged_file", "label")[:CHUNK_SIZE]
        )
        if not rows:
            return
        last_id = rows[-1][0]
        yield [_PendingItem(*row) for row in rows]


def inspect_and_store(source: FileSource, limits: ImportLimits, *, archives: OpenArchive) -> InspectedImage | str:
    """Pool side of an import: read, inspect and store one file's original and thumbnail (content-addressed,
    before any row refers to them). Returns the result without its bytes, or the reason for a rejection."""
    result = inspect_source(source, limits, archives=archives)
    if isinstance(result, InspectedImage):
        _store_image_files(result)
        result = dataclasses.replace(result, data=b"", thumbnail=b"")
    return result


# The open zip of this pool process (set by _pool_process_init in each process of an import's pool, which owns
# it: the pool, and so the archive, ends with the import run). Never set in the job's own process.
_pool_archive: OpenArchive | None = None


def _pool_process_init() -> None:
    """Set up one pool process: it dies with the process that forked it, and has a fresh storage object."""
    global _pool_archive
    _die_with_parent()
    # A storage client inherited over fork (S3's connection pool) must not be shared between processes.
    default_storage._wrapped = empty
    storages._storages = {}
    _pool_archive = OpenArchive()


def _pool_inspect_and_store(source: FileSource, limits: ImportLimits) -> InspectedImage | str:
    if _pool_archive is None:
        raise RuntimeError("_pool_inspect_and_store runs only in a pool process set up by _pool_process_init")
    return inspect_and_store(source, limits, archives=_pool_archive)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a killed worker must not leave its pool behind)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _process_pending(*, job: ImportJob, limits: ImportLimits, processes: int | None) -> bool:
    """Process the pending items; True when the job was cancelled (or taken over) on the way."""
    pending = job.items.filter(outcome=ImportOutcome.PENDING).count()
    if processes is None:
        processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if pending == 0:
        return False
    if processes <= 1 or pending < POOL_MIN_ITEMS:
        with OpenArchive() as archives:
            for chunk in _pending_chunks(job):
                if jobs.job_should_stop(job=job):
                    return True
                results = [inspect_and_store(_item_file_source(job, item), limits, archives=archives) for item in chunk]
                _store_chunk(job=job, chunk=chunk, results=results)
        return False
    # fork: the pool's children inherit the loaded code and settings instantly. They only read files and run
    # Pillow; they never touch the database connection they inherit.
    context = multiprocessing.get_context("fork")
    # children_allowed: the pool is shut down before the task returns and each child dies with its parent
    # (_die_with_parent), so a Celery pool child may start it.
    with children_allowed(), concurrent.futures.ProcessPoolExecutor(
        max_workers=processes, mp_context=context, initializer=_pool_process_init
    ) as pool:
        # Two chunks in flight: the pool inspects the next chunk while this process stores the previous one,
        # and memory stays bounded by two chunks whatever the number of images.
        in_flight: tuple[list[_PendingItem], Iterator] | None = None
        for chunk in _pending_chunks(job):
            if jobs.job_should_stop(job=job):
                return True
            sources = [_item_file_source(job, item) for item in chunk]
            results = pool.map(_pool_inspect_and_store, sources, [limits] * len(sources), chunksize=4)
            if in_flight is not None:
                _store_chunk(job=job, chunk=in_flight[0], results=list(in_flight[1]))
            in_flight = (chunk, results)
        if in_flight is not None:
            _store_chunk(job=job, chunk=in_flight[0], results=list(in_flight[1]))
    return False


def _store_chunk(*, job: ImportJob, chunk: list[_PendingItem], results: list[InspectedImage | str]) -> None:
    """The rows of one chunk in one transaction (`inspect_and_store` has written the files already)."""
    for attempt in range(1, _STORE_ATTEMPTS + 1):
        try:
            staged = _store_chunk_rows(job=job, chunk=chunk, results=results)
            break
        except IntegrityError:
            # Another run inserted one of these images between our check and our insert (the task delivered
            # twice, two jobs with the same file): the next attempt sees it as a duplicate.
            if attempt == _STORE_ATTEMPTS:
                raise
            logger.info("import job %s: concurrent insert, retrying chunk (attempt %s)", job.pk, attempt + 1)
    for key in staged:
        _storage_delete_quietly(key)


@transaction.atomic
def _store_chunk_rows(*, job: ImportJob, chunk: list[_PendingItem], results: list[InspectedImage | str]) -> list[str]:
    items = {
        item.pk: item
        for item in ImportItem.objects.select_for_update().filter(
            pk__in=[entry.id for entry in chunk], outcome=ImportOutcome.PENDING
        )
    }
    shas = {r.sha256 for r in results if isinstance(r, InspectedImage)}
    images_by_sha = {
        image.sha256: image for image in Image.objects.filter(sha256__in=shas).only("id", "sha256", "original_name")
    }
    new_images: dict[str, Image] = {}
    first_item_of_sha: dict[str, int] = {}
    for entry, result in zip(chunk, results):
        if entry.id not in items or not isinstance(result, InspectedImage):
            continue
        if result.sha256 in images_by_sha or result.sha256 in new_images:
            continue
        image = _image_row(job=job, entry=entry, inspected=result)
        # Field checks only: the foreign key is the job in hand (validating it would cost a query per image)
        # and the unique sha256 is the database's to enforce.
        image.clean_fields(exclude=["import_job"])
        new_images[result.sha256] = image
        first_item_of_sha[result.sha256] = entry.id
    if new_images:
        Image.objects.bulk_create(list(new_images.values()))
    labels: list[ImportedLabel] = []
    staged: list[str] = []
    for entry, result in zip(chunk, results):
        item = items.get(entry.id)
        if item is None:
            continue  # another run stored it already
        if item.staged_file:
            staged.append(item.staged_file)
            item.staged_file = ""
        if isinstance(result, str):
            item.outcome, item.message = ImportOutcome.ERROR, result
            continue
        if first_item_of_sha.get(result.sha256) == entry.id:
            item.outcome, item.image, item.message = ImportOutcome.IMPORTED, new_images[result.sha256], ""
        else:
            original = images_by_sha.get(result.sha256) or new_images[result.sha256]
            item.outcome, item.image = ImportOutcome.DUPLICATE, original
            item.message = f"duplicate of image {original.pk} ({original.original_name})"
        if entry.label:
            labels.extend(_imported_labels(item.image, entry))
    _update_item_outcomes(items.values())
    consensus_imported_add(labels=labels, method=IMPORTED_LABEL_METHOD)
    _progress_counts(job)
    return staged


def _update_item_outcomes(items: Iterable[ImportItem]) -> None:
    """One parameterised UPDATE per item (rows_update_by_pk): bulk_update's CASE expressions cost more than
    everything else an import does in this process."""
    rows_update_by_pk(ImportItem, ["outcome", "image", "message", "staged_file"],
                      ((item.outcome, item.image_id, item.message, item.staged_file, item.pk) for item in items))


def _image_row(*, job: ImportJob, entry: _PendingItem, inspected: InspectedImage) -> Image:
    source = job.source_name
    if entry.label and isinstance(entry.label.get("source"), str) and entry.label["source"].strip():
        source = entry.label["source"].strip()[:200]
    return Image(
        sha256=inspected.sha256,
        phash=inspected.phash,
        width=inspected.width,
        height=inspected.height,
        format=inspected.format,
        mode=inspected.mode,
        file_size=inspected.file_size,
        original_name=PurePosixPath(entry.name).name[:512] or entry.name[:512],
        source=source or "import",
        file=image_file_key(inspected.sha256, inspected.format),
        thumbnail=thumbnail_key(inspected.sha256),
        import_job=job,
    )


def _imported_labels(image: Image, entry: _PendingItem) -> Iterable[ImportedLabel]:
    label_source = entry.label.get("source") if isinstance(entry.label.get("source"), str) else ""
    for dimension, score in label_scores(entry.label, item_name=entry.name).items():
        yield ImportedLabel(image_id=image.pk, dimension=dimension, score=score, label_source=label_source or "")


_COUNT_FIELDS = ["total", "processed", "imported_count", "duplicate_count", "error_count", "labels_count"]


def _save_counts(job: ImportJob) -> None:
    _refresh_counts(job)
    job.save(update_fields=[*_COUNT_FIELDS, "updated_at"])


def _progress_counts(job: ImportJob) -> None:
    """The worker's progress: the counters, written only while this worker holds the job."""
    _refresh_counts(job)
    jobs.job_progress(job=job, **{field: getattr(job, field) for field in _COUNT_FIELDS})


def _refresh_counts(job: ImportJob) -> None:
    """Derive the job's counters from its items (never incremented, so they cannot drift)."""
    by_outcome = dict(job.items.order_by().values_list("outcome").annotate(n=Count("id")))
    job.total = sum(by_outcome.values())
    job.processed = job.total - by_outcome.get(ImportOutcome.PENDING, 0)
    job.imported_count = by_outcome.get(ImportOutcome.IMPORTED, 0)
    job.duplicate_count = by_outcome.get(ImportOutcome.DUPLICATE, 0)
    job.error_count = by_outcome.get(ImportOutcome.ERROR, 0)
    if job.kind == ImportKind.HUMANBEAUTY:
        job.labels_count = job.items.filter(
            label__isnull=False, outcome__in=(ImportOutcome.IMPORTED, ImportOutcome.DUPLICATE)
        ).count()


# --- single images and storage -------------------------------------------------------------------------------


def image_file_key(sha256: str, image_format: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.{extension_for_format(image_format)}"


def thumbnail_key(sha256: str) -> str:
    return f"thumbs/{sha256[:2]}/{sha256}.jpg"


def _store_image_files(inspected: InspectedImage) -> None:
    """Write an image's original and thumbnail before any row names them (so no row is ever without its files).
    An outage between the two leaves the original alone in the store; the item stays pending and its retry
    writes the same content-addressed keys (a complete object already there is kept)."""
    with storage_guard(f"storing image {inspected.sha256[:12]}"):
        _storage_put(image_file_key(inspected.sha256, inspected.format), inspected.data)
        _storage_put(thumbnail_key(inspected.sha256), inspected.thumbnail)


def _storage_put(key: str, data: bytes) -> None:
    """Write `data` under exactly `key`. The key names the content, so a complete file already there is kept;
    a short one (a crash mid-write) is replaced."""
    if default_storage.exists(key):
        if default_storage.size(key) == len(data):
            return
        default_storage.delete(key)
    saved = default_storage.save(key, ContentFile(data))
    if saved != key:
        # Another writer stored the same content under `key` meanwhile; ours is a redundant copy.
        default_storage.delete(saved)


def _storage_save_exact(key: str, content) -> str:
    with storage_guard(f"storing the upload {key}"):
        if default_storage.exists(key):
            default_storage.delete(key)  # a stale staging file of a rolled-back attempt: the key is ours
        saved = default_storage.save(key, content)
    if saved != key:
        default_storage.delete(saved)
        raise ServiceError("Could not stage the upload; please retry.", code="staging_conflict", status_code=409)
    return saved


def _storage_delete_quietly(key: str) -> None:
    try:
        default_storage.delete(key)
    except Exception:  # noqa: BLE001 -- cleanup of a staging file must never fail an import
        logger.warning("could not delete staging file %s", key, exc_info=True)


def _delete_staging_leftovers(job: ImportJob) -> None:
    """Delete the job's staged uploads once nothing is pending (a crash between a chunk's commit and its
    deletes, or an uploaded zip, leaves files behind)."""
    if job.items.filter(outcome=ImportOutcome.PENDING).exists():
        return  # a resume still needs them
    directory = f"{STAGING_PREFIX}/{job.pk}"
    try:
        with storage_guard(f"listing {directory}"):
            _dirs, names = default_storage.listdir(directory)
    except (FileNotFoundError, NotImplementedError, OSError):
        return
    except StorageUnavailable as exc:
        # every item is done: the leftovers are only garbage, not worth failing the job for
        logger.warning("import job %s: staged uploads not deleted: %s", job.pk, exc.message)
        return
    for name in names:
        _storage_delete_quietly(f"{directory}/{name}")
    job.items.exclude(staged_file="").update(staged_file="")
    if isinstance(default_storage, FileSystemStorage):  # object stores have no folders to leave behind
        try:
            os.rmdir(default_storage.path(directory))
        except OSError:
            pass  # already gone, or a file appeared meanwhile (it is deleted with the next pass)


def image_ingest(*, data: bytes, name: str, source: str, import_job: ImportJob | None = None) -> tuple[Image, bool]:
    """Import one image from bytes, synchronously (scripts, demo data). Returns (image, created); an image
    with the same content already in the catalog is returned with created False. Raises ServiceError if the
    bytes are not an importable image."""
    from .imaging import ImageRejected, inspect_image

    limits = ImportLimits.from_settings()
    if len(data) > limits.max_file_bytes:
        raise ServiceError(f"{name}: file is larger than the limit of {limits.max_file_bytes:,} bytes")
    try:
        inspected = inspect_image(data, max_pixels=limits.max_image_pixels, thumbnail_size=limits.thumbnail_size)
    except ImageRejected as exc:
        raise ServiceError(f"{name}: {exc}", code="image_rejected") from None
    existing = Image.objects.filter(sha256=inspected.sha256).first()
    if existing is not None:
        return existing, False
    _store_image_files(inspected)
    return _image_ingest_row(inspected=inspected, name=name, source=source, import_job=import_job)


@transaction.atomic
def _image_ingest_row(*, inspected: InspectedImage, name: str, source: str, import_job) -> tuple[Image, bool]:
    image = Image(
        sha256=inspected.sha256, phash=inspected.phash, width=inspected.width, height=inspected.height,
        format=inspected.format, mode=inspected.mode, file_size=inspected.file_size,
        original_name=PurePosixPath(name).name[:512] or "image", source=source[:200] or "import",
        file=image_file_key(inspected.sha256, inspected.format), thumbnail=thumbnail_key(inspected.sha256),
        import_job=import_job,
    )
    image.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        return Image.objects.get(sha256=inspected.sha256), False
    return image, True



# --- approving without a review --------------------------------------------------------------------------------


@transaction.atomic
def images_approve_unreviewed(*, image_ids: Sequence[int]) -> int:
    """Approve images that no curator has decided on yet (imported or filtered) without a review batch: what the
    demo data uses so that a campaign can start at once. Approved, rejected, in-campaign or broken images are left
    as they are; returns how many became approved."""
    from django.utils import timezone

    from .models import ImageStatus

    return Image.objects.filter(pk__in=list(image_ids), status__in=[ImageStatus.IMPORTED, ImageStatus.FILTERED]).update(
        status=ImageStatus.APPROVED, updated_at=timezone.now()
    )


# --- leftovers in storage --------------------------------------------------------------------------------------


def storage_orphans_delete(*, names: Sequence[str]) -> int:
    """Delete stored files that selectors.storage_orphans found (nothing refers to them); returns how many. An
    unreachable store: StorageUnavailable (what was deleted stays deleted; run it again)."""
    deleted = 0
    for name in names:
        with storage_guard(f"deleting {name}"):
            default_storage.delete(name)
        deleted += 1
    if deleted:
        logger.info("deleted %d stored file(s) that nothing referred to", deleted)
    return deleted
