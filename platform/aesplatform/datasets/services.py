"""Dataset versions (create, freeze) and exports (create, run): the writes of the datasets app.

A version is a draft until frozen; freezing selects the labels (selection.py), splits them (splits.py) and
inserts the items in one transaction; from then on the database itself refuses any change (migration 0002).
An export is a worker job: it writes into a temporary directory next to its target, renames it into place when
complete (no half-written export is ever visible). The download archive (one tar) is not written: it is a
function of the export's files, streamed at download time (writers.iter_archive); the job records its size.
On an object store (AESP_STORAGE_BACKEND=s3) the folder is only the worker's scratch: the job uploads that same
tar as one object (exports/<id>/attempt-<n>/<name>.tar, in parts above AESP_S3_MULTIPART_BYTES), succeeds only once the
object is complete, and removes the folder; a failed or cancelled upload leaves no object and no open multipart
upload behind (docs/storage-exports.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from aesplatform.annotation.selectors import (
    CONSENSUS_METHOD,
    CONSENSUS_METHODS,
    DEFAULT_CONSENSUS_METHOD,
    campaign_consensus_methods,
)
from aesplatform.common import jobs
from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.common.models import DIMENSION_FIELDS, JobState
from aesplatform.common.object_transfer import (
    chunk_reader,
    object_purge,
    object_purge_patiently,
    object_size,
    object_upload,
)
from aesplatform.common.objectstore import LocalCache, storage_is_local
from aesplatform.common.sql import rows_insert
from aesplatform.common.text import counted

from . import limits, writers
from . import selection as selection_mod
from .models import DatasetItem, DatasetKind, DatasetState, DatasetVersion, Export, ExportFormat, Split
from .splits import assign_splits

if TYPE_CHECKING:
    from aesplatform.annotation.models import Campaign

logger = logging.getLogger(__name__)

BT500_METHOD = CONSENSUS_METHOD  # "bt500": the campaigns' only consensus method before they could choose one
ITEM_CHUNK = 2000
PROGRESS_EVERY = 5000


def code_version() -> str:
    try:
        package = importlib.metadata.version("humanaes-platform")
    except importlib.metadata.PackageNotFoundError:
        package = "unknown"
    return f"humanaes-platform {package}; export-format {writers.FORMAT_VERSION}"


# --- versions -------------------------------------------------------------------------------------------------


@transaction.atomic
def dataset_version_create(
    *,
    created_by,
    name: str,
    campaigns: list[Campaign] | None = None,
    include_imported_labels: bool = True,
    kind: str = DatasetKind.MIXED,
    consensus_method: str | None = None,
    min_ratings: int = limits.MIN_RATINGS_DEFAULT,
    split_seed: int = 0,
    test_ratio: float = limits.TEST_RATIO_DEFAULT,
    description: str = "",
) -> DatasetVersion:
    """A draft version: the selection (campaigns and/or imported labels), the label rules and the split.

    `consensus_method`: the method whose campaign labels the version takes; by default the campaigns' own (they
    must agree), DEFAULT_CONSENSUS_METHOD without campaigns. A campaign whose consensus is made by another method is
    refused (its labels would be silently left out)."""
    campaigns = list(campaigns or [])
    if consensus_method is None:
        own = sorted({c.consensus_method for c in campaigns})
        consensus_method = own[0] if len(own) == 1 else DEFAULT_CONSENSUS_METHOD if not own else None
        if consensus_method is None:
            raise ServiceError("The chosen campaigns make their consensus with different methods "
                               f"({', '.join(own)}): choose the consensus method of the version, or change the "
                               "campaigns' methods.", code="consensus_method_mismatch")
    name = (name or "").strip()
    if not campaigns and not include_imported_labels:
        raise ServiceError("Empty selection: choose at least one campaign or include the imported labels.",
                           code="empty_selection")
    if consensus_method not in CONSENSUS_METHODS:
        raise ServiceError(f"Unknown consensus method {consensus_method!r}; expected one of "
                           f"{', '.join(CONSENSUS_METHODS)}.", code="unknown_consensus_method")
    if kind not in DatasetKind.values:
        raise ServiceError(f"Unknown kind {kind!r}; expected one of {', '.join(DatasetKind.values)}.",
                           code="unknown_kind")
    _check_campaign_methods([c.pk for c in campaigns], consensus_method)
    number = (DatasetVersion.objects.select_for_update().filter(name=name).aggregate(n=Max("version"))["n"] or 0) + 1
    version = DatasetVersion(
        name=name, version=number, kind=kind, include_imported_labels=include_imported_labels,
        consensus_method=consensus_method, min_ratings=min_ratings, split_seed=split_seed, test_ratio=test_ratio,
        description=description, created_by=created_by,
    )
    version.full_clean()
    try:
        with transaction.atomic():
            version.save()
    except IntegrityError:
        raise ConflictError(f"Version {number} of {name!r} was created at the same time; try again.",
                            code="version_exists") from None
    if campaigns:
        version.campaigns.set(campaigns)
    return version


def _check_campaign_methods(campaign_ids: list[int], method: str) -> None:
    """Every campaign's consensus is made by `method`, and its stored rows are (no recomputation pending)."""
    for _, (name, own, stored) in sorted(campaign_consensus_methods(campaign_ids=campaign_ids).items()):
        if own != method:
            raise ServiceError(f"Campaign {name!r} makes its consensus with {own}, not {method}: choose {own} for "
                               "the version, or change the campaign's consensus method.",
                               code="consensus_method_mismatch")
        if stored and method not in stored:  # the rows change method all at once (one transaction)
            raise ServiceError(f"Campaign {name!r}'s consensus is being recomputed with {method} (its method "
                               "changed); try again when it is done.", code="consensus_recompute_pending")


def _insert_items(version: DatasetVersion, selection: selection_mod.Selection, is_test: list[bool]) -> None:
    fields = ["version", "image", "split", "is_expert", "source", "rating_count", *DIMENSION_FIELDS]

    def rows() -> Iterator[tuple]:
        for i, image_id in enumerate(selection.image_ids):
            yield (version.pk, image_id, Split.TEST if is_test[i] else Split.TRAIN, selection.is_expert[i],
                   selection.sources[i], selection.rating_counts[i], *selection.scores[i])

    rows_insert(DatasetItem, fields, rows())  # COPY on PostgreSQL: versions hold 50 000+ items


def _counts(selection: selection_mod.Selection, is_test: list[bool], report: dict) -> dict:
    by_split = {s: {"overall": 0, "expert": 0, "total": 0} for s in Split.values}
    by_source: dict[str, dict[str, int]] = {}
    for i, test in enumerate(is_test):
        split = Split.TEST if test else Split.TRAIN
        kind = "expert" if selection.is_expert[i] else "overall"
        by_split[split][kind] += 1
        by_split[split]["total"] += 1
        source = by_source.setdefault(selection.sources[i], {"train": 0, "test": 0, "overall": 0, "expert": 0})
        source[split] += 1
        source[kind] += 1
    return {
        "total": len(is_test),
        "by_split": by_split,
        "by_source": dict(sorted(by_source.items())),
        "by_kind": {k: by_split["train"][k] + by_split["test"][k] for k in ("overall", "expert")},
        "label_origin": selection.origins,
        "excluded": {"rejected_or_broken_images": selection.excluded_status},
        "balance": report,
    }


@transaction.atomic
def dataset_version_freeze(*, version: DatasetVersion) -> DatasetVersion:
    """Select the labels, split, insert the items and freeze: all or nothing."""
    version = DatasetVersion.objects.select_for_update().get(pk=version.pk)
    if version.state == DatasetState.FROZEN:
        raise ConflictError(f"{version} is already frozen.", code="already_frozen")
    _check_campaign_methods(list(version.campaigns.values_list("pk", flat=True)), version.consensus_method)
    version.items.all().delete()
    selection = selection_mod.select_labels(version)
    if selection.lacking_count:
        need = "all 12 dimensions" if version.kind == DatasetKind.EXPERT else "an overall score"
        raise ServiceError(
            f"{counted(selection.lacking_count, 'image')} "
            f"lack{'s' if selection.lacking_count == 1 else ''} the labels a {version.kind} version needs ({need}); "
            f"first image ids: {', '.join(map(str, selection.lacking))}. Choose kind 'mixed' or label them first.",
            code="missing_labels",
        )
    if not len(selection):
        raise ServiceError(
            "Empty selection: no image of the chosen campaigns or imported labels has a label "
            f"(consensus method {version.consensus_method}, at least {counted(version.min_ratings, 'rating')}).",
            code="empty_selection",
        )
    split = assign_splits(
        keys=selection.keys, sources=selection.sources, is_expert=selection.is_expert, levels=selection.levels,
        groups=selection.groups, seed=version.split_seed, test_ratio=version.test_ratio,
    )
    _insert_items(version, selection, split.is_test)
    version.counts = _counts(selection, split.is_test, split.report)
    version.state = DatasetState.FROZEN
    version.frozen_at = timezone.now()
    version.code_version = code_version()
    version.full_clean()
    version.save()
    logger.info("froze %s: %s images", version, len(selection))
    return version


# --- export options -------------------------------------------------------------------------------------------

IMAGE_MODES = ("hardlink", "symlink", "copy")
COMMON_OPTIONS: dict[str, Any] = {"images": "hardlink", "archive": True, "target_dir": ""}
FORMAT_OPTIONS: dict[str, dict[str, Any]] = {
    ExportFormat.HUMANBEAUTY: {},
    ExportFormat.TRAINING_JSONL: {"image_paths": "relative", "prompts": False, "prompt_seed": None},
}
OPTION_HELP = {
    "images": "how images get into the export: hardlink (falls back to copy), symlink or copy",
    "archive": "offer the export as one .tar download, streamed from its files (true/false)",
    "target_dir": "absolute directory inside the export roots; must not exist or be empty (default: automatic)",
    "image_paths": "training jsonl: relative (to the jsonl's folder, the default: a download holds no server path) "
                   "or absolute (this server's paths) image paths",
    "prompts": "training jsonl: fill `query` with a prompt chosen from the seed (default: empty)",
    "prompt_seed": "training jsonl: the seed of the prompts (default: the version's split seed)",
}


def export_roots() -> list[Path]:
    """Where exports may be written: the default root and any configured AESP_EXPORT_ROOTS."""
    return [export_root(), *[Path(p).resolve() for p in settings.AESP_EXPORT_ROOTS]]


def export_root() -> Path:
    return Path(settings.AESP_EXPORT_ROOT).resolve()


def export_options_normalize(*, format: str, options: dict | None, version: DatasetVersion) -> dict:
    """Defaults filled in, every value checked; an unknown option or value is a ServiceError naming it."""
    if format not in ExportFormat.values:
        raise ServiceError(f"Unknown format {format!r}; expected one of {', '.join(ExportFormat.values)}.",
                           code="unknown_format")
    options = dict(options or {})
    if not isinstance(options, dict):
        raise ServiceError("options must be an object.", code="invalid_options")
    allowed = {**COMMON_OPTIONS, **FORMAT_OPTIONS[format]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ServiceError(
            f"Unknown option(s) for {format}: {', '.join(unknown)}. Allowed: "
            + "; ".join(f"{k} ({OPTION_HELP[k]})" for k in sorted(allowed)),
            code="unknown_option",
        )
    out = {**allowed, **options}
    if out["images"] not in IMAGE_MODES:
        raise ServiceError(f"images must be one of {', '.join(IMAGE_MODES)}, got {out['images']!r}.",
                           code="invalid_option")
    if not isinstance(out["archive"], bool):
        raise ServiceError("archive must be true or false.", code="invalid_option")
    if not isinstance(out["target_dir"], str):
        raise ServiceError("target_dir must be a string.", code="invalid_option")
    if format == ExportFormat.TRAINING_JSONL:
        if out["image_paths"] not in ("absolute", "relative"):
            raise ServiceError(f"image_paths must be absolute or relative, got {out['image_paths']!r}.",
                               code="invalid_option")
        if not isinstance(out["prompts"], bool):
            raise ServiceError("prompts must be true or false.", code="invalid_option")
        if out["prompt_seed"] is None:
            out["prompt_seed"] = version.split_seed
        if isinstance(out["prompt_seed"], bool) or not isinstance(out["prompt_seed"], int):
            raise ServiceError("prompt_seed must be an integer.", code="invalid_option")
    out["target_dir"] = str(_target_dir(out["target_dir"], version=version, format=format)) if out["target_dir"] else ""
    return dict(sorted(out.items()))


def options_digest(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "dataset"


def _target_dir(raw: str, *, version: DatasetVersion, format: str) -> Path:
    path = Path(raw)
    if not path.is_absolute():
        raise ServiceError(f"target_dir must be an absolute path, got {raw!r}.", code="invalid_option")
    resolved = path.resolve()
    if not any(resolved == root or root in resolved.parents for root in export_roots()):
        raise ServiceError(
            f"target_dir {raw!r} is outside the export folders ({', '.join(map(str, export_roots()))}).",
            code="target_outside_roots",
        )
    return resolved


def export_target(export: Export) -> Path:
    """The directory of a finished export: the chosen target_dir or one named after the version and choices."""
    if export.options.get("target_dir"):
        return Path(export.options["target_dir"])
    version = export.version
    return export_root() / f"{_slug(version.name)}-v{version.version}-{export.format}-{export.options_digest[:12]}"


def _check_stored_options(options: dict) -> None:
    """On an object store the export is its archive (one object): the web host and the next worker cannot see a
    folder on the worker that wrote it."""
    if not options.get("archive"):
        raise ServiceError("Exports are kept on the object store as their archive: archive=false is not available "
                           "with this storage.", code="invalid_option")
    if options.get("target_dir"):
        raise ServiceError("Exports are kept on the object store: target_dir (a folder on the worker) is not "
                           "available with this storage.", code="invalid_option")


def export_archive_key(export: Export, target: Path) -> str:
    """The object of an export's archive on the object store: one folder per attempt (a worker that was given up on
    and still uploads never writes or removes the object of the attempt that took over), the tar named as the
    download."""
    return f"{export_attempt_prefix(export)}{target.name}.tar"


def export_archive_prefix(export: Export) -> str:
    """Every attempt's objects of an export (removed before an attempt starts)."""
    return f"exports/{export.pk}/"


def export_attempt_prefix(export: Export) -> str:
    return f"{export_archive_prefix(export)}attempt-{export.attempts}/"


def _check_target_free(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ServiceError(f"The target directory {target} exists and is not empty.", code="target_not_empty")


# --- exports --------------------------------------------------------------------------------------------------


def _live_export(version: DatasetVersion, format: str, digest: str) -> Export | None:
    return (Export.objects.filter(version=version, format=format, options_digest=digest)
            .exclude(state__in=[JobState.FAILED, JobState.CANCELLED]).first())


@transaction.atomic
def export_create(
    *, version: DatasetVersion, format: str, options: dict | None, created_by, enqueue: bool = True
) -> tuple[Export, bool]:
    """Queue an export. The same version, format and options while one is pending, running or done give that
    one back (created False): two requests at once make one export."""
    if version.state != DatasetState.FROZEN:
        raise ConflictError(f"{version} is a draft: freeze it before exporting.", code="not_frozen")
    normalized = export_options_normalize(format=format, options=options, version=version)
    digest = options_digest(normalized)
    existing = _live_export(version, format, digest)
    if existing is not None:
        return existing, False
    export = Export(version=version, format=format, options=normalized, options_digest=digest,
                    created_by=created_by, total=int(version.counts.get("total", 0)))
    if storage_is_local():
        _check_target_free(export_target(export))
    else:
        _check_stored_options(normalized)
    export.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            export.save()
    except IntegrityError:
        existing = _live_export(version, format, digest)
        if existing is None:
            raise
        return existing, False
    if enqueue:
        _enqueue_run(export)
    return export, True


def _enqueue_run(export: Export) -> None:
    jobs.job_enqueue(job=export)


def export_rows(version: DatasetVersion) -> Iterator[writers.ExportRow]:
    """The items of a version in export order (overall-only first, then expert; by image sha256), streamed."""
    rows = (
        DatasetItem.objects.filter(version=version).order_by("is_expert", "image__sha256")
        .values_list("is_expert", "split", "source", "image__sha256", "image__file", "image__file_size",
                     *DIMENSION_FIELDS)
        .iterator(chunk_size=ITEM_CHUNK)
    )
    for is_expert, split, source, sha256, file, size, *scores in rows:
        extension = os.path.splitext(file)[1].lower() or ".jpg"
        yield writers.ExportRow(image_name=f"{sha256}{extension}", image_sha256=sha256, image_file=file,
                                image_size=size, source=source, split=split, is_expert=is_expert,
                                scores=tuple(scores))


def training_data_write(*, version: DatasetVersion, directory: Path) -> dict[str, str]:
    """The version's training jsonl files for the trainer ({"train": path, "test": path}): those of a finished
    training-jsonl export when one exists (newest first; relative image paths are resolved against the jsonl's
    folder by model_core's reader, absolute ones are read as they are), else written into `directory` once,
    atomically, from the version's rows (the records of such an export, in its order, pointing at the stored
    images, absolute, instead of copies). An earlier run's files in `directory` are reused."""
    from .selectors import training_jsonl_exports

    for export in training_jsonl_exports(version_id=version.pk):
        if not export.path:
            continue
        files = {split: Path(export.path) / name for split, name in writers.TRAINING_FILES.items()}
        if all(p.is_file() for p in files.values()):
            return {k: str(v) for k, v in files.items()}

    files = {split: directory / name for split, name in writers.TRAINING_FILES.items()}
    if all(p.is_file() for p in files.values()):
        return {k: str(v) for k, v in files.items()}
    rows: Iterable[writers.ExportRow] = export_rows(version)
    if storage_is_local():
        local_path = _local_path_function()

        def image_path(row: writers.ExportRow) -> str:
            return local_path(row.image_file)
    else:
        # An object store: the images are copied next to the records (never pointed at in the evictable cache,
        # which could drop one in the middle of an epoch), resumably: a later run keeps the complete copies.
        images_root = directory.with_name(directory.name + ".images")
        rows = _training_images_fetched(rows, images_root)

        def image_path(row: writers.ExportRow) -> str:
            return str(images_root / row.image_file)

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writers.write_training_records(tmp, rows, image_path=image_path)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return {k: str(v) for k, v in files.items()}


# Images copied from an object store at once for training data (each copy is mostly waiting on the network).
TRAINING_FETCH_THREADS = 8
TRAINING_FETCH_BATCH = 256


def _training_images_fetched(rows: Iterable[writers.ExportRow], root: Path) -> Iterator[writers.ExportRow]:
    """The rows, each after its image is copied from the object store to `root/<key>` (in parallel batches; each
    copy written under a temporary name and renamed, and one of the right size already there kept: an interrupted
    run resumes). An image missing from the store: ServiceError naming it; a store that does not answer:
    StorageUnavailable (the copies made so far stay for the next run)."""
    from concurrent.futures import ThreadPoolExecutor

    copies = LocalCache(root, max_bytes=2**62)  # the cache's atomic, size-checked download; never evicted

    def fetch(row: writers.ExportRow) -> None:
        try:
            copies.get(row.image_file, size=row.image_size or None)
        except FileNotFoundError:
            raise ServiceError(f"The image file {row.image_file} (sha256 {row.image_sha256}) is missing from the "
                               f"store; training cannot read it.", code="image_missing") from None

    batch: list[writers.ExportRow] = []
    with ThreadPoolExecutor(max_workers=TRAINING_FETCH_THREADS, thread_name_prefix="training-fetch") as pool:
        for row in itertools.chain(rows, [None]):
            if row is not None:
                batch.append(row)
                if len(batch) < TRAINING_FETCH_BATCH:
                    continue
            for _ in pool.map(fetch, batch):
                pass
            yield from batch
            batch = []


def _local_path_function():
    """key -> filesystem path of a stored file, or None for storages without one (S3: images are copied)."""
    storage = default_storage
    if isinstance(storage, FileSystemStorage):  # (a LazyObject reports the class it wraps)
        location = os.path.abspath(storage.location)

        def fast(key: str) -> str:
            # keys are the catalog's own (images/ab/<sha>.<ext>); anything else goes through the safe join
            if key.startswith(("/", "\\")) or ".." in key or "\\" in key:
                return storage.path(key)
            return f"{location}/{key}"

        return fast

    def generic(key: str) -> str | None:
        try:
            return storage.path(key)
        except NotImplementedError:
            return None

    return generic


class _ExportCancelled(Exception):
    """The export was cancelled (or taken over by another worker) while it was being written."""


def export_manifest(export: Export) -> dict:
    version = export.version
    return {
        "format": export.format,
        "format_version": writers.FORMAT_VERSION,
        "options": {k: v for k, v in export.options.items() if k != "target_dir"},
        "dataset_version": {"name": version.name, "version": version.version, "kind": version.kind,
                            "frozen_at": version.frozen_at.isoformat() if version.frozen_at else None,
                            "campaigns": sorted(version.campaigns.values_list("pk", flat=True)),
                            "include_imported_labels": version.include_imported_labels,
                            "min_ratings": version.min_ratings},
        "split_seed": version.split_seed,
        "test_ratio": version.test_ratio,
        "consensus_method": version.consensus_method,
        "code_version": version.code_version,
        "counts": {k: version.counts.get(k) for k in ("total", "by_split", "by_source", "by_kind")},
    }


def export_resume(*, export: Export) -> Export:
    """Queue a failed or stalled export again; it starts over in a fresh temporary directory."""
    live = _live_export(export.version, export.format, export.options_digest)
    if live is not None and live.pk != export.pk:
        raise ConflictError(f"Export {live.pk} of the same version, format and options is {live.state}; use that one.",
                            code="duplicate_export")
    return jobs.job_resume(job=export)


def export_cancel(*, export: Export) -> Export:
    """Stop an export; its half-written directory is removed and nothing becomes visible."""
    return jobs.job_cancel(job=export)


def export_run(*, export_id: int) -> Export | None:
    """Write an export (worker). Idempotent: a finished export is left alone; an interrupted one starts over
    in a fresh temporary directory; a second delivery while one runs does nothing."""
    with jobs.job_running(model=Export, job_id=export_id) as export:
        if export is None:
            return Export.objects.filter(pk=export_id).first()
        jobs.job_progress(job=export, processed=0)
        export = Export.objects.select_related("version").get(pk=export_id)
        target = export_target(export)
        # One temporary directory per attempt: a worker that was given up on (and still writes) never shares one
        # with the worker that took the export over. What earlier attempts left behind is removed.
        temp = target.parent / f".{target.name}.partial-{export.pk}-{export.attempts}"
        for leftover in target.parent.glob(f".{target.name}.partial-{export.pk}-*"):
            _remove(leftover)
        stored = not storage_is_local()
        try:
            if stored:
                _check_stored_options(export.options)
                # what an earlier attempt left on the store (parts of an upload that could not be aborted)
                object_purge(export_archive_prefix(export))
            summary = _write_export(export, target=target, temp=temp, stored=stored)
        except _ExportCancelled:
            _remove(temp)
            if stored:
                object_purge_patiently(export_attempt_prefix(export), wait_s=STORE_CLEANUP_WAIT_S)
            jobs.job_cancelled(job=export)
            return jobs.job_refresh(export)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job, none leaves files behind
            _remove(temp)
            if stored and not object_purge_patiently(export_attempt_prefix(export), wait_s=STORE_CLEANUP_WAIT_S):
                exc = _with_leftover_note(exc, export)
            if isinstance(exc, ServiceError):
                message = exc.message
                logger.info("export %s refused: %s", export_id, message)
            else:
                message = str(exc) if isinstance(exc, (writers.ExportWriteError, OSError)) else repr(exc)
                logger.exception("export %s failed", export_id)
            jobs.job_fail(job=export, error=message)
            return jobs.job_refresh(export)
        archive_key = summary.pop("archive_key", "")
        if archive_key:  # the archive is the object; the scratch folder is gone
            succeeded = jobs.job_succeed(job=export, path="", archive_path="", archive_key=archive_key,
                                         archive_size=summary.pop("archive_bytes"), manifest=summary,
                                         processed=export.total)
            if not succeeded:  # cancelled or taken over meanwhile: that worker's outcome stands, not this object
                logger.info("export %s: no longer this worker's; its uploaded archive is removed", export_id)
                object_purge_patiently(export_attempt_prefix(export), wait_s=STORE_CLEANUP_WAIT_S)
            return jobs.job_refresh(export)
        jobs.job_succeed(job=export, path=str(target), archive_path="",  # streamed from `path` at download time
                         archive_size=summary.pop("archive_bytes", None), manifest=summary, processed=export.total)
        return jobs.job_refresh(export)


def _with_leftover_note(exc: Exception, export: Export) -> Exception:
    note = (f" Part of the upload may remain under {export_attempt_prefix(export)} on the store; it is removed when "
            "the export is resumed.")
    if isinstance(exc, ServiceError):
        return ServiceError(exc.message + note, code=exc.code)
    return ServiceError(f"{exc if isinstance(exc, (writers.ExportWriteError, OSError)) else repr(exc)}.{note}",
                        code="export_failed")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _write_export(export: Export, *, target: Path, temp: Path, stored: bool = False) -> dict:
    """The export's files into `temp`, then renamed to `target`; `stored` (an object store): the archive of the
    files in `temp` uploaded as one object instead, and `temp` removed (the worker's folder is only scratch)."""
    if not stored:
        _check_target_free(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp.mkdir()
    options = export.options
    version = export.version
    placer = writers.ImagePlacer(mode=options["images"], local_path=_local_path_function(),
                                 open_file=lambda k: default_storage.open(k, "rb"), background=True)
    last = [0]

    def progress(done: int) -> None:
        if done - last[0] >= PROGRESS_EVERY:
            last[0] = done
            if not jobs.job_progress(job=export, processed=done) or jobs.job_should_stop(job=export):
                raise _ExportCancelled()

    rows = export_rows(version)
    if export.format == ExportFormat.HUMANBEAUTY:
        files = writers.write_humanbeauty(temp, rows, placer=placer, progress=progress)
    else:
        files = writers.write_training_jsonl(
            temp, rows, placer=placer, progress=progress, final_root=target, image_paths=options["image_paths"],
            prompts=options["prompts"], prompt_seed=options["prompt_seed"],
        )
    files = writers.sort_files(files)
    manifest_entry = writers.write_manifest(temp, export_manifest(export), files)
    files.append(manifest_entry)
    summary = {**export_manifest(export), "files_count": len(files), "manifest_sha256": manifest_entry.sha256,
               "images": placer.counts}
    if options.get("archive"):
        summary["archive_bytes"] = writers.archive_size(files, prefix=target.name)
    if jobs.job_should_stop(job=export):
        raise _ExportCancelled()
    if stored:
        layout = writers.archive_layout(files, prefix=target.name)
        key = export_archive_key(export, target)
        size = _upload_archive(export, temp, layout, key)
        if size != layout.size:
            raise ServiceError(f"The store holds {size} bytes of {key}, not the {layout.size} sent.",
                               code="storage_mismatch")
        _remove(temp)
        summary["archive_key"] = key
        return summary
    if target.exists():  # an empty directory that was there already (checked again: the check above was earlier)
        _check_target_free(target)
        target.rmdir()
    os.rename(temp, target)
    return summary


# Seconds a failed or cancelled upload waits for the store to answer, to remove its parts before the job ends.
STORE_CLEANUP_WAIT_S = 60.0
UPLOAD_CHECK_S = 1.0


def _upload_archive(export: Export, root: Path, layout: writers.ArchiveLayout, key: str) -> int:
    """Upload the archive of the files under `root` (the very bytes a download of a local export streams) as the
    object `key`; a cancel stops it. The upload runs in a thread that touches no database (s3transfer reads the
    stream in its own threads); this thread follows the job: heartbeat, cancel."""
    stop = threading.Event()
    outcome: dict[str, object] = {}

    def check(_done: int) -> None:
        if stop.is_set():
            raise _ExportCancelled()

    def upload() -> None:
        try:
            reader = writers_stream(root, layout, check)
            outcome["size"] = object_upload(key, reader)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            outcome["error"] = exc

    worker = threading.Thread(target=upload, name=f"export-upload-{export.pk}", daemon=True)
    worker.start()
    while True:
        worker.join(timeout=UPLOAD_CHECK_S)
        if not worker.is_alive():
            break
        if not stop.is_set() and jobs.job_should_stop(job=export):
            logger.info("export %s: cancelled during the upload of %s", export.pk, key)
            stop.set()
    error = outcome.get("error")
    if stop.is_set():
        raise _ExportCancelled()
    if error is not None:
        cause = error
        while cause is not None and not isinstance(cause, (_ExportCancelled, ServiceError)):
            cause = cause.__cause__ or cause.__context__
        raise cause if cause is not None else error
    return int(outcome["size"])


def writers_stream(root: Path, layout: writers.ArchiveLayout, check):
    """The archive of the files under `root` as a readable file (what the upload reads)."""
    return chunk_reader(writers.iter_archive(root, layout), check=check)


# --- the download archive -------------------------------------------------------------------------------------


class ArchiveUnavailable(Exception):
    """The export has no archive, or its files are gone or changed; the message says which."""


def export_archive(export: Export) -> tuple[Path, writers.ArchiveLayout]:
    """The root and the tar layout of a finished export's download archive, from its manifest (checked against
    the hash recorded when it was written: the archive streamed is the one its ETag names)."""
    if not export.options.get("archive") or export.archive_size is None:
        raise ArchiveUnavailable("This export was made without an archive (option archive=false).")
    root = Path(export.path)
    manifest = root / writers.MANIFEST
    try:
        with open(manifest, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        files = writers.read_manifest_files(root)
    except (OSError, ValueError, KeyError):
        raise ArchiveUnavailable("The export's files are missing.") from None
    if digest != export.manifest.get("manifest_sha256"):
        raise ArchiveUnavailable("The export's files changed since it was written.")
    layout = writers.archive_layout(files, prefix=root.name)
    if layout.size != export.archive_size:
        raise ArchiveUnavailable("The export's files changed since it was written.")
    return root, layout


def export_stored_archive_size(export: Export) -> int:
    """The size of a finished export's archive object, checked against the size recorded when it was uploaded;
    ArchiveUnavailable when it is gone or differs, StorageUnavailable when the store does not answer."""
    try:
        size = object_size(export.archive_key)
    except FileNotFoundError:
        raise ArchiveUnavailable("The export's archive is missing from the object store.") from None
    if size != export.archive_size:
        raise ArchiveUnavailable("The export's archive on the object store changed since it was written.")
    return size
