"""Writes of curation: filter runs, their results and proposals, review batches and curator decisions.

The life of a filter run:
1. `filter_run_create` (web request): validates the selection, the CLIP model + checkpoint, the prompt set and
   the thresholds; records the run with one pending FilterResult per image, all in one transaction, and queues
   `aesplatform.curation.tasks.filter_run_execute` (queue `gpu`) once it commits. Any bad input: a 4xx and no row
   at all.
2. `filter_run_execute` (GPU worker, CPU without one): scores the results that are still unscored, in chunks
   (aesplatform.common.chunks: ranges of result ids, whole model batches) through the engine's batched pipeline;
   with AESP_RUN_HELPERS > 0 other workers claim chunks too (`filter_run_assist`), each image in the same batch
   whoever scores it. Each model batch is written with one bulk UPDATE guarded by `scored_at IS NULL` and counted
   on its chunk in the same transaction, so a new delivery (the worker was killed: the job sweep queues the run
   again; a helper died: its chunk's lease runs out and another worker takes it) picks up where the last
   committed batch ended and no image is scored twice. The common job claim (aesplatform.common.jobs) keeps two
   deliveries of the same run from both holding it. An image whose file vanished is marked (result error, image
   `broken`).
3. `filter_run_finalize`: near-duplicate groups (ANN over the stored embeddings), proposals from thresholds,
   ReviewBatches of at most `review_batch_size` images (a duplicate group stays in one batch when it fits in
   one), images `imported` -> `filtered`. A run without a checkpoint (`random_weights`) proposes from the pixel
   signals only: its CLIP probabilities and embeddings are noise, so they neither reject nor group an image.
4. `filter_run_repropose`: new thresholds re-propose the undecided results from the stored signals (the model
   does not run again) and refill the pending batches, which keep their ids (an open batch page stays valid).
5. `review_batch_decide`: a curator approves a batch with per-image overrides; one CuratorDecision per image
   (who, when, what, whether it overrode the proposal); images become `approved` / `rejected`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common import chunks, jobs
from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.common.model_cache import LoadedModelCache
from aesplatform.common.models import ACTIVE_JOB_STATES, JobState
from aesplatform.common.objectstore import (
    CacheWarmer,
    StorageUnavailable,
    local_copies,
    storage_is_local,
    storage_job_stopped,
)

from . import limits, selectors
from .engine import prompts as engine_prompts
from .engine import proposals as engine_proposals
from .models import (
    BatchState,
    CuratorDecision,
    FilterResult,
    FilterRun,
    FilterRunChunk,
    ProposedDecision,
    ReviewBatch,
)

logger = logging.getLogger(__name__)

FILTERABLE_STATUSES = (ImageStatus.IMPORTED, ImageStatus.FILTERED)
DECIDABLE_STATUSES = (ImageStatus.IMPORTED, ImageStatus.FILTERED, ImageStatus.APPROVED, ImageStatus.REJECTED)
_DECISION_FROM_PROPOSAL = {ProposedDecision.KEEP: CuratorDecision.Decision.APPROVE,
                           ProposedDecision.REJECT: CuratorDecision.Decision.REJECT}


# --- configuration -------------------------------------------------------------------------------------------


def filter_config() -> dict[str, Any]:
    """settings.AESP_FILTER (from the environment: AESP_CLIP_*, AESP_FILTER_*). The results fetched at once (and
    decode workers started) are a chunk of the run: AESP_RUN_CHUNK_SIZE, aesplatform.common.chunks."""
    return {**settings.AESP_FILTER}


# The models a new run page offers (names only: the engine, and torch with it, is not imported by the web pages).
LARGE_MODEL = "ViT-L-14"  # the model of real filtering, with a local checkpoint
SMALL_MODEL = "AESP-Tiny-CLIP"  # a tiny architecture: seconds for hundreds of images on a CPU, always random weights


def filter_default_model() -> tuple[str, str]:
    """(model, checkpoint) of a new run that names none: AESP_CLIP_MODEL / AESP_CLIP_CHECKPOINT when set; unset,
    ViT-L-14 when a checkpoint is configured, else the small model. Random weights say nothing in any model,
    so without weights the fastest model is the right one (ViT-L-14 at random: minutes per batch on a CPU)."""
    config = filter_config()
    checkpoint = (config["DEFAULT_CHECKPOINT"] or "").strip()
    model = (config["DEFAULT_MODEL"] or "").strip()
    if model:
        return model, checkpoint
    return (LARGE_MODEL, checkpoint) if checkpoint else (SMALL_MODEL, "")


def filter_measured_seconds_per_image(*, model_name: str, random_weights: bool) -> float | None:
    """The scoring time per image measured by the newest finished run of this model (with or without weights,
    as asked) on this installation; None when no such run has been measured yet."""
    return (
        FilterRun.objects.filter(clip_model_name=model_name, random_weights=random_weights,
                                 seconds_per_image__isnull=False)
        .order_by("-finished_at", "-id").values_list("seconds_per_image", flat=True).first()
    )


def filter_model_options(*, images: int) -> list[dict[str, Any]]:
    """What the new run page lists: each model with its weights (local file or random), the measured time per
    image and the expected duration over `images` images (None where not measured yet)."""
    default_model, default_checkpoint = filter_default_model()
    configured = (filter_config()["DEFAULT_CHECKPOINT"] or "").strip()
    options = [(default_model, default_checkpoint)]
    for model, checkpoint in ((SMALL_MODEL, ""), (LARGE_MODEL, configured)):
        if (model, checkpoint) not in options:
            options.append((model, checkpoint))
    rows = []
    for model, checkpoint in options:
        per_image = filter_measured_seconds_per_image(model_name=model, random_weights=not checkpoint)
        rows.append({
            "model": model, "checkpoint": checkpoint, "random_weights": not checkpoint,
            "default": (model, checkpoint) == (default_model, default_checkpoint),
            "seconds_per_image": per_image,
            "expected_seconds": None if per_image is None else per_image * images,
        })
    return rows


def _full_clean(obj, **kwargs) -> None:
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        raise ServiceError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc


# --- creating a run ------------------------------------------------------------------------------------------


def _busy_image_ids(image_ids: Iterable[int] | None = None) -> set[int]:
    """Images another run is still scoring, or whose proposal still waits in a pending review batch."""
    busy = FilterResult.objects.filter(Q(run__state__in=ACTIVE_JOB_STATES) | Q(batch__state=BatchState.PENDING))
    if image_ids is not None:
        busy = busy.filter(image_id__in=list(image_ids))
    return set(busy.values_list("image_id", flat=True))


def _select_images(*, image_ids: Sequence[int] | None, source: str | None, import_job: int | None) -> list[int]:
    if image_ids is not None:
        wanted = list(dict.fromkeys(int(i) for i in image_ids))
        found = dict(Image.objects.filter(id__in=wanted).values_list("id", "status"))
        unknown = [i for i in wanted if i not in found]
        if unknown:
            raise ServiceError(f"Unknown image id(s): {', '.join(map(str, unknown[:20]))}.", code="unknown_images")
        wrong = [i for i in wanted if found[i] not in FILTERABLE_STATUSES]
        if wrong:
            listed = ", ".join(f"{i} ({found[i]})" for i in wrong[:20])
            raise ServiceError(
                f"Only imported or filtered images can be filtered; these are not: {listed}.", code="wrong_status"
            )
        busy = _busy_image_ids(wanted)
        if busy:
            raise ConflictError(
                f"Image(s) {', '.join(map(str, sorted(busy)[:20]))} are in another run that is still scoring or "
                "waiting for review.", code="images_busy",
            )
        return wanted
    images = Image.objects.filter(status__in=FILTERABLE_STATUSES) if (source or import_job) else Image.objects.filter(
        status=ImageStatus.IMPORTED
    )
    if source:
        images = images.filter(source=source)
    if import_job:
        images = images.filter(import_job_id=import_job)
    busy = FilterResult.objects.filter(Q(run__state__in=ACTIVE_JOB_STATES) | Q(batch__state=BatchState.PENDING))
    return list(images.exclude(id__in=busy.values("image_id")).order_by("id").values_list("id", flat=True))


def _checkpoint_validate(model_name: str, checkpoint: str) -> None:
    from .engine.clip import CheckpointError, checkpoint_check

    roots = filter_config()["CHECKPOINT_ROOTS"]
    if checkpoint and roots is not None:
        resolved = Path(checkpoint).resolve()
        if not any(resolved.is_relative_to(Path(root).resolve()) for root in roots):
            raise ServiceError(f"Checkpoint {checkpoint} is outside the allowed model folders.", code="bad_checkpoint")
    try:
        checkpoint_check(model_name, checkpoint)
    except CheckpointError as exc:
        raise ServiceError(str(exc), code="bad_checkpoint") from exc


@transaction.atomic
def filter_run_create(
    *,
    created_by,
    name: str = "",
    image_ids: Sequence[int] | None = None,
    source: str | None = None,
    import_job: int | None = None,
    clip_model_name: str | None = None,
    clip_checkpoint: str | None = None,
    prompt_set: dict | None = None,
    thresholds: dict | None = None,
    batch_size: int = limits.BATCH_SIZE_DEFAULT,
    review_batch_size: int = limits.REVIEW_BATCH_SIZE_DEFAULT,
    enqueue: bool = True,
) -> FilterRun:
    """Record a run over the selected images and queue it (after commit).

    Selection: `image_ids`, or every imported/filtered image of `source` and/or `import_job`, or (neither given)
    every imported image; images another run is still scoring or reviewing are refused (ids) or left out.
    """
    default_model, default_checkpoint = filter_default_model()
    model_name = (clip_model_name or default_model).strip()
    if clip_checkpoint is None:  # the configured checkpoint goes with the default model only
        clip_checkpoint = default_checkpoint if model_name == default_model else ""
    checkpoint = clip_checkpoint.strip()
    if not limits.BATCH_SIZE_MIN <= batch_size <= limits.BATCH_SIZE_MAX:
        raise ServiceError(f"batch_size must be between {limits.BATCH_SIZE_MIN} and {limits.BATCH_SIZE_MAX}.")
    if not limits.REVIEW_BATCH_SIZE_MIN <= review_batch_size <= limits.REVIEW_BATCH_SIZE_MAX:
        raise ServiceError(f"review_batch_size must be between {limits.REVIEW_BATCH_SIZE_MIN} and "
                           f"{limits.REVIEW_BATCH_SIZE_MAX}.")
    try:
        prompts = engine_prompts.prompt_set_validate(
            prompt_set if prompt_set is not None else engine_prompts.default_prompt_set()
        )
        checked_thresholds = engine_proposals.thresholds_validate(thresholds or {}, groups=list(prompts["groups"]))
    except ValueError as exc:
        raise ServiceError(str(exc), code="invalid_settings") from exc
    _checkpoint_validate(model_name, checkpoint)
    selected = _select_images(image_ids=image_ids, source=source, import_job=import_job)
    if not selected:
        raise ServiceError(
            "The selection holds no image that can be filtered (imported or filtered, and not in another run that "
            "is still scoring or waiting for review).", code="empty_selection",
        )
    run = FilterRun(
        name=(name or f"Filter run {timezone.now():%Y-%m-%d %H:%M}")[:200],
        clip_model_name=model_name,
        clip_checkpoint=checkpoint,
        prompt_set=prompts,
        thresholds=checked_thresholds,
        batch_size=batch_size,
        review_batch_size=review_batch_size,
        random_weights=not checkpoint,
        total=len(selected),
        created_by=created_by,
    )
    _full_clean(run)
    run.save()
    FilterResult.objects.bulk_create((FilterResult(run=run, image_id=i) for i in selected), batch_size=5000)
    if enqueue:
        filter_run_enqueue(run=run)
    logger.info("filter run %s created over %s images (%s)", run.pk, run.total, model_name)
    return run


def filter_run_enqueue(*, run: FilterRun) -> None:
    jobs.job_enqueue(job=run)


def filter_run_resume(*, run: FilterRun) -> FilterRun:
    """Queue a run again (it failed, stalled, or its message was lost): only what is left runs."""
    if run.state == JobState.FAILED:
        _checkpoint_validate(run.clip_model_name, run.clip_checkpoint)
    return jobs.job_resume(job=run)


def filter_run_cancel(*, run: FilterRun) -> FilterRun:
    """Stop a run that is still scoring (the worker stops after its current batch); nothing is proposed."""
    return jobs.job_cancel(job=run)


# --- scoring (the worker) ------------------------------------------------------------------------------------


# The CLIP model last scored with, per process (see LoadedModelCache).
CLIP_SCORERS: LoadedModelCache[Any] = LoadedModelCache()


def _device(config: dict[str, Any], device: str | None) -> str:
    import torch

    wanted = device or config["DEVICE"]
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def _scorer_for(run: FilterRun, device: str):
    """The loaded model for this run, kept in the worker process for the next run with the same model."""
    from .engine.clip import ClipScorer

    scorer = CLIP_SCORERS.get(
        (run.clip_model_name, run.clip_checkpoint, device),
        lambda: ClipScorer(model_name=run.clip_model_name, checkpoint=run.clip_checkpoint,
                           prompt_set=run.prompt_set, device=device),
    )
    scorer.use_prompts(run.prompt_set)
    return scorer


# Threads fetching a chunk's images from an object store at once (each fetch is mostly waiting on the network).
STORAGE_FETCH_THREADS = 8


def _chunk_items(chunk: list[tuple[int, str]]) -> tuple[list, list]:
    """The pipeline's items for a chunk of (result id, stored name): local paths, which the decode workers read
    as plain files. On an object store this process fetches the chunk into the host's cache first, in parallel
    (the decode workers never talk to the store: no client or Django in them, and an outage surfaces here, as
    StorageUnavailable, before anything of the chunk is written). Also returns the results of the images whose
    file is not stored at all ("file missing": those are really broken)."""
    from .engine.pipeline import ImageItem, ScoredImage

    paths = local_copies([name for _, name in chunk], max_workers=STORAGE_FETCH_THREADS)
    items = [ImageItem(result_id, str(paths[name])) for result_id, name in chunk if paths[name] is not None]
    missing = [ScoredImage(key=result_id, error=f"file missing: {name}") for result_id, name in chunk
               if paths[name] is None]
    return items, missing


def _evicted_unscored(scored: list, items: list) -> list:
    """A batch without the images whose cached copy was evicted before a decode worker read it (a cache under
    pressure, a long chunk): that is not the image's fault, so they stay unscored and a later chunk fetches them
    again. On local storage a missing file is the image's own problem and is kept."""
    if storage_is_local():
        return scored
    path_of = {item.key: item.path for item in items}
    return [s for s in scored if not (s.error.startswith(("file missing", "cannot read the file"))
                                      and not Path(path_of.get(s.key, "")).is_file())]


def filter_run_execute(*, run_id: int, device: str | None = None, num_workers: int | None = None,
                       storage_retry_s: float | None = None, worker: str = "") -> FilterRun | None:
    """Score what is left of a run, then finalize it. Idempotent and resumable (see the module docstring).

    The worker that takes the run holds it: it cuts what is left into chunks, asks AESP_RUN_HELPERS other workers
    to help (`filter_run_assist`), scores chunks itself, waits for the others' and finalizes the run once.
    `worker`: this worker's name in the chunk rows (the Celery node; default the host).

    An object store that does not answer stops the run before the chunk it was fetching (no image is marked
    broken for it). With `storage_retry_s` (the task queues the run again after that many seconds; it continues
    from the first unscored image) the run goes back to pending and StorageUnavailable is raised; without, it
    fails with the store's message."""
    with jobs.job_running(model=FilterRun, job_id=run_id) as run:
        if run is None:
            return FilterRun.objects.filter(pk=run_id).first()
        config = filter_config()
        from .engine.clip import CheckpointError

        try:
            scorer = _scorer_for(run, _device(config, device))
        except CheckpointError as exc:
            jobs.job_fail(job=run, error=str(exc))
            return jobs.job_refresh(run)
        try:
            return _filter_run_score(run, scorer=scorer, config=config, num_workers=num_workers,
                                     worker=chunks.worker_name(worker))
        except SoftTimeLimitExceeded:
            jobs.job_release(job=run)  # the task queues itself again and continues from the first unscored image
            raise
        except StorageUnavailable as exc:
            if storage_job_stopped(job=run, error=exc, retry_in_s=storage_retry_s):
                raise
            return jobs.job_refresh(run)
        except Exception as exc:
            jobs.job_fail(job=run, error=f"{type(exc).__name__}: {exc}")
            raise


def filter_run_assist(*, run_id: int, device: str | None = None, num_workers: int | None = None,
                      worker: str = "") -> dict[str, Any]:
    """Help the worker holding a run: score chunks of it until none is free, then end (at once when none is).
    Never ends the run (its holder does); a failure here gives the chunk back to the others and ends the helper."""
    run = FilterRun.objects.filter(pk=run_id, state=JobState.RUNNING, cancel_requested=False).first()
    if run is None or not chunks.chunks_claimable(model=FilterRunChunk, job=run):
        return {"run": run_id, "chunks": 0}
    config = filter_config()
    name = chunks.worker_name(worker)
    try:
        scorer = _scorer_for(run, _device(config, device))
        work = _ChunkScoring(run, scorer=scorer, config=config, num_workers=num_workers, holder=False)
        done = chunks.run_chunks_work(model=FilterRunChunk, job=run, worker=name, work=work)
    except SoftTimeLimitExceeded:  # its chunk was given back; the others go on
        return {"run": run_id, "stopped": True}
    except Exception:  # noqa: BLE001 - the run's holder (or another helper) scores the chunk; the run goes on
        logger.exception("filter run %s: helper %s failed; its chunk was given back", run_id, name)
        return {"run": run_id, "chunks": 0, "failed": True}
    logger.info("filter run %s: helper %s scored %s chunk(s)", run_id, name, work.chunks)
    return {"run": run_id, "chunks": work.chunks, "stopped": not done}


# On a CPU a large model batch is hardly faster per image, but it holds the progress counter still for minutes
# (ViT-L-14: seconds per image): CPU runs score in batches of at most this many images.
CPU_BATCH_MAX = 8


def _chunk_unit(run: FilterRun) -> int:
    """Chunks hold whole batches on a GPU (run.batch_size) and on a CPU (at most CPU_BATCH_MAX): each image is
    scored in the same batch whichever worker, of either kind, scores its chunk."""
    return math.lcm(run.batch_size, min(run.batch_size, CPU_BATCH_MAX))


def _filter_run_split(run: FilterRun) -> list[tuple[int, int, int]]:
    keys = (FilterResult.objects.filter(run_id=run.pk, scored_at__isnull=True).order_by("id")
            .values_list("id", flat=True).iterator(chunk_size=20000))
    return chunks.chunk_bounds(keys, size=chunks.chunk_size_aligned(_chunk_unit(run)))


class _ChunkScoring:
    """Scores what is left of one chunk of a run, batch by batch (the holder's and the helpers' work)."""

    def __init__(self, run: FilterRun, *, scorer, config: dict[str, Any], num_workers: int | None, holder: bool):
        self.run, self.scorer, self.holder = run, scorer, holder
        # an object store: the next chunk this worker holds is fetched while this one is scored
        self.warmer = CacheWarmer(max_workers=STORAGE_FETCH_THREADS)
        self.workers = config["NUM_WORKERS"] if num_workers is None else num_workers
        self.batch_size = run.batch_size if scorer.device.type == "cuda" else min(run.batch_size, CPU_BATCH_MAX)
        self.chunks = 0

    def stop(self) -> bool:
        """The holder: a cancel, or the run is no longer its own. A helper: the run stopped running, was cancelled,
        or was taken up again by a new holder."""
        if self.holder:
            return jobs.job_should_stop(job=self.run)
        return not FilterRun.objects.filter(pk=self.run.pk, state=JobState.RUNNING, attempts=self.run.attempts,
                                            cancel_requested=False).exists()

    def _left(self, chunk: FilterRunChunk):
        return (FilterResult.objects.filter(run_id=self.run.pk, scored_at__isnull=True, pk__gte=chunk.first_key,
                                            pk__lte=chunk.last_key).order_by("id"))

    def prefetch(self, chunk: FilterRunChunk) -> None:
        self.warmer.warm(list(self._left(chunk).values_list("image__file", flat=True)))

    def __call__(self, chunk: FilterRunChunk) -> bool:
        from .engine.pipeline import pipeline_run

        started = time.monotonic()
        items, missing = _chunk_items(list(self._left(chunk).values_list("id", "image__file")))
        if missing:
            _results_write(run=self.run, scored=missing, chunk=chunk, seconds=0.0, alive=self.holder)
        for scored in pipeline_run(items, self.scorer, batch_size=self.batch_size,
                                   num_workers=self.workers) if items else ():
            now = time.monotonic()
            _results_write(run=self.run, scored=_evicted_unscored(scored, items), chunk=chunk,
                           seconds=now - started, alive=self.holder)
            started = now
            if self.stop():
                return False
        self.chunks += 1
        return True

def _filter_run_score(run: FilterRun, *, scorer, config: dict[str, Any], num_workers: int | None,
                      worker: str) -> FilterRun:
    work = _ChunkScoring(run, scorer=scorer, config=config, num_workers=num_workers, holder=True)
    finished = chunks.run_chunks_work(model=FilterRunChunk, job=run, worker=worker, work=work,
                                      split=lambda: _filter_run_split(run))
    if not finished:
        jobs.job_cancelled(job=run)  # guarded: a no-op when the run is no longer this worker's
        logger.info("filter run %s stopped", run.pk)
        return jobs.job_refresh(run)
    per_image = chunks.seconds_per_item(model=FilterRunChunk, job=run)
    return filter_run_finalize(run=run, seconds_per_image=per_image)


@transaction.atomic
def _results_write(*, run: FilterRun, scored: Sequence, chunk: FilterRunChunk | None = None, seconds: float = 0.0,
                   alive: bool = True) -> int:
    """One bulk UPDATE for a batch; rows another delivery already scored are left alone.

    Under a chunk, the batch is counted on it in the same transaction (LeaseLost when the chunk was taken over: the
    batch is not written). `alive`: the run's holder (a helper records progress, not a sign of life)."""
    run_id = run.pk
    if chunk is not None:
        chunks.chunk_scored_add(chunk=chunk, items=len(scored), seconds=seconds)
    keys = [s.key for s in scored]
    rows = {
        r.pk: r for r in FilterResult.objects.select_for_update()
        .filter(run_id=run_id, pk__in=keys, scored_at__isnull=True).only("id", "image_id")
    }
    now = timezone.now()
    broken: list[int] = []
    for s in scored:
        row = rows.get(s.key)
        if row is None:
            continue
        row.scored_at = now
        row.error = s.error[:2000]
        row.clip_probabilities = s.probabilities
        row.embedding = None if s.embedding is None else np.asarray(s.embedding, dtype=np.float16).tobytes()
        row.face_count = s.face_count
        row.largest_face_fraction = s.largest_face_fraction
        row.blur_variance = s.blur_variance
        row.exposure = s.exposure
        row.pixel_digest = s.digest
        if s.error:
            broken.append(row.image_id)
    FilterResult.objects.bulk_update(
        rows.values(),
        ["scored_at", "error", "clip_probabilities", "embedding", "face_count", "largest_face_fraction",
         "blur_variance", "exposure", "pixel_digest"],
    )
    if broken:
        Image.objects.filter(pk__in=broken, status__in=FILTERABLE_STATUSES).update(
            status=ImageStatus.BROKEN, updated_at=now
        )
    left = FilterResult.objects.filter(run_id=run_id, scored_at__isnull=True).count()
    # from the database, whoever scored: several workers write at once, so the count only goes up
    jobs.job_progress(job=run, alive=alive, processed=Greatest(F("processed"), Value(max(0, run.total - left))))
    return len(rows)


# --- proposals and review batches ----------------------------------------------------------------------------


@transaction.atomic
def filter_run_finalize(*, run: FilterRun, seconds_per_image: float | None = None) -> FilterRun:
    """Group duplicates, propose, batch, mark images filtered; done once, in one transaction, by the worker
    that holds the run. `seconds_per_image`: the scoring time measured by this worker (None: not measured)."""
    held = run
    run = FilterRun.objects.select_for_update().get(pk=run.pk)
    if run.state != JobState.RUNNING or run.attempts != held.attempts:
        return run
    if FilterResult.objects.filter(run=run, scored_at__isnull=True).exists():
        raise ConflictError(f"Filter run {run.pk} still has unscored images.")
    _propose(run, regroup=True)
    scored_ok = FilterResult.objects.filter(run=run, error="").values("image_id")
    Image.objects.filter(pk__in=scored_ok, status=ImageStatus.IMPORTED).update(
        status=ImageStatus.FILTERED, updated_at=timezone.now()
    )
    measured = {"seconds_per_image": seconds_per_image} if seconds_per_image is not None else {}
    jobs.job_succeed(job=run, processed=run.total, **measured)
    logger.info("filter run %s finalized", run.pk)
    return jobs.job_refresh(run)


@transaction.atomic
def filter_run_repropose(*, run: FilterRun, thresholds: dict) -> FilterRun:
    """New thresholds -> new proposals and pending batches for the undecided images; decided ones stay."""
    run = FilterRun.objects.select_for_update().get(pk=run.pk)
    if run.state != JobState.SUCCEEDED:
        raise ConflictError(
            f"Filter run {run.pk} is {run.state}; thresholds can be changed once it has scored every image.",
            code="run_not_scored",
        )
    try:
        merged = engine_proposals.thresholds_validate(
            thresholds, groups=list(run.prompt_set.get("groups", {})), base=run.thresholds
        )
    except ValueError as exc:
        raise ServiceError(str(exc), code="invalid_thresholds") from exc
    regroup = merged["near_duplicate_cosine"] != run.thresholds.get("near_duplicate_cosine")
    run.thresholds = merged
    _full_clean(run)
    run.save(update_fields=["thresholds", "updated_at"])
    _propose(run, regroup=regroup)
    return run


def _propose(run: FilterRun, *, regroup: bool) -> None:
    thresholds = run.thresholds
    labels = {g: spec.get("label", g) for g, spec in run.prompt_set.get("groups", {}).items()}
    fields = ["id", "image_id", "error", "clip_probabilities", "face_count", "largest_face_fraction",
              "blur_variance", "exposure", "pixel_digest", "near_duplicate_of_id", "is_exact_duplicate",
              "batch_id", "batch__state", "image__width", "image__height"]
    if regroup:
        fields.append("embedding")
    rows = list(FilterResult.objects.filter(run=run, scored_at__isnull=False).order_by("id").values(*fields))
    decided = {r["id"] for r in rows if r["batch__state"] == BatchState.DECIDED}
    scored = [r for r in rows if not r["error"]]
    group_rep: dict[int, int] = {}  # result id -> representative's result id
    if regroup:
        group_rep = _duplicate_groups(run, scored, thresholds["near_duplicate_cosine"])
    else:
        by_image = {r["image_id"]: r["id"] for r in scored}
        for r in scored:
            if r["near_duplicate_of_id"] in by_image:
                group_rep[r["id"]] = by_image[r["near_duplicate_of_id"]]
            else:
                group_rep[r["id"]] = r["id"]
    image_of = {r["id"]: r["image_id"] for r in rows}
    digest_of = {r["id"]: r["pixel_digest"] for r in rows}
    updates: list[FilterResult] = []
    for r in rows:
        if r["id"] in decided:
            continue
        rep = group_rep.get(r["id"], r["id"])
        duplicate_of = image_of[rep] if rep != r["id"] else None
        exact = bool(duplicate_of) and bool(r["pixel_digest"]) and r["pixel_digest"] == digest_of[rep]
        signals = {
            "error": r["error"], "width": r["image__width"], "height": r["image__height"],
            "face_count": r["face_count"], "largest_face_fraction": r["largest_face_fraction"],
            "blur_variance": r["blur_variance"], "exposure": r["exposure"], "clip": r["clip_probabilities"],
            "duplicate_of": duplicate_of, "exact_duplicate": exact,
        }
        proposal = engine_proposals.proposal_compute(signals, thresholds, group_labels=labels,
                                                     clip_trusted=not run.random_weights)
        updates.append(FilterResult(
            pk=r["id"], proposed_decision=proposal.decision, reasons=proposal.reasons,
            uncertainty=proposal.uncertainty, near_duplicate_of_id=duplicate_of, is_exact_duplicate=exact,
        ))
    FilterResult.objects.bulk_update(
        updates, ["proposed_decision", "reasons", "uncertainty", "near_duplicate_of", "is_exact_duplicate"],
        batch_size=2000,
    )
    _batches_rebuild(run, undecided=[r for r in rows if r["id"] not in decided and not r["error"]], group_rep=group_rep)
    # the run's counts kept from now on (review_batch_decide adds each batch's decisions)
    run.result_counts = selectors.filter_run_counts_count(run=run)
    FilterRun.objects.filter(pk=run.pk).update(result_counts=run.result_counts)


def _duplicate_groups(run: FilterRun, scored: list[dict], threshold: float) -> dict[int, int]:
    """result id -> representative result id; also merges the groups into Image.near_duplicate_group.

    Random weights: the embeddings say nothing about the images, so only pixel-identical images are grouped."""
    from .engine.dedup import duplicate_groups

    if run.random_weights:
        with_embedding = [r for r in scored if r["pixel_digest"]]
        embeddings = np.zeros((0, 1), dtype=np.float32)
    else:
        with_embedding = [r for r in scored if r["embedding"]]
    if not with_embedding:
        return {}
    if not run.random_weights:
        embeddings = np.stack(
            [np.frombuffer(bytes(r["embedding"]), dtype=np.float16) for r in with_embedding]
        ).astype(np.float32)
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    rank = [(r["image__width"] * r["image__height"], -r["image_id"]) for r in with_embedding]
    groups = duplicate_groups(embeddings, [r["pixel_digest"] for r in with_embedding], threshold=threshold, rank=rank)
    rep = {r["id"]: with_embedding[groups.group_of[i]]["id"] for i, r in enumerate(with_embedding)}
    members: dict[int, list[int]] = {}
    for i, r in enumerate(with_embedding):
        members.setdefault(groups.group_of[i], []).append(r["image_id"])
    _near_duplicate_groups_merge([m for m in members.values() if len(m) > 1])
    return rep


def _near_duplicate_groups_merge(groups: list[list[int]]) -> None:
    """Image.near_duplicate_group: one id per group (the smallest image id involved); groups only ever merge,
    so a dataset split that keeps groups together never separates images once found to be duplicates."""
    for image_ids in groups:
        existing = set(
            Image.objects.filter(pk__in=image_ids, near_duplicate_group__isnull=False)
            .values_list("near_duplicate_group", flat=True)
        )
        group_id = min([*image_ids, *existing])
        Image.objects.filter(Q(pk__in=image_ids) | Q(near_duplicate_group__in=existing)).exclude(
            near_duplicate_group=group_id
        ).update(near_duplicate_group=group_id)


def review_pages(units: list[list[int]], size: int) -> list[list[int]]:
    """Pack units (a duplicate group, or one image) in order into pages of at most `size` ids: a unit that fits
    in one page is never split; a larger one fills pages of its own."""
    pages: list[list[int]] = [[]]
    for ids in units:
        for start in range(0, len(ids), size):
            part = ids[start : start + size]
            if pages[-1] and len(pages[-1]) + len(part) > size:
                pages.append([])
            pages[-1].extend(part)
    return [page for page in pages if page]


def _batches_rebuild(run: FilterRun, *, undecided: list[dict], group_rep: dict[int, int]) -> None:
    """Pending batches are refilled from the undecided results: most uncertain first, groups kept together, at
    most review_batch_size images each. The pending batches keep their ids and numbers (a page open on one stays
    valid); only batches no longer needed are deleted, and new ones are numbered after the last."""
    pending = list(ReviewBatch.objects.filter(run=run, state=BatchState.PENDING).order_by("number"))
    FilterResult.objects.filter(batch__in=pending).update(batch=None)
    uncertainty = dict(
        FilterResult.objects.filter(pk__in=[r["id"] for r in undecided]).values_list("id", "uncertainty")
    )
    units: dict[int, list[int]] = {}
    for r in undecided:
        units.setdefault(group_rep.get(r["id"], r["id"]), []).append(r["id"])
    ordered = sorted(units.values(), key=lambda ids: (-max(uncertainty[i] or 0.0 for i in ids), min(ids)))
    pages = review_pages(ordered, run.review_batch_size)
    surplus = pending[len(pages):]
    if surplus:
        ReviewBatch.objects.filter(pk__in=[b.pk for b in surplus]).delete()
    batches = pending[: len(pages)]
    if len(pages) > len(batches):
        first = (ReviewBatch.objects.filter(run=run).aggregate(n=Max("number"))["n"] or 0) + 1
        batches += ReviewBatch.objects.bulk_create(
            ReviewBatch(run=run, number=first + i) for i in range(len(pages) - len(batches))
        )
    assignments = [FilterResult(pk=rid, batch_id=batch.pk) for batch, ids in zip(batches, pages) for rid in ids]
    FilterResult.objects.bulk_update(assignments, ["batch"], batch_size=2000)


# --- decisions -----------------------------------------------------------------------------------------------


@transaction.atomic
def _run_counts_add_decisions(*, run_id: int, rows: Sequence[CuratorDecision]) -> None:
    """Add a decided batch's decisions to the run's kept counts (a batch is decided once), under the run's row
    lock, in the decision's transaction."""
    run = FilterRun.objects.select_for_update().only("id", "result_counts").get(pk=run_id)
    if run.result_counts is None:
        return  # not kept for this run: counted when read
    counts = dict(run.result_counts)
    counts["approved"] += sum(r.decision == CuratorDecision.Decision.APPROVE for r in rows)
    counts["rejected"] += sum(r.decision == CuratorDecision.Decision.REJECT for r in rows)
    counts["overrides"] += sum(r.overrode_proposal for r in rows)
    FilterRun.objects.filter(pk=run_id).update(result_counts=counts)


@transaction.atomic
def review_batch_decide(*, batch: ReviewBatch, decided_by, decisions: Sequence[dict] = ()) -> ReviewBatch:
    """Decide a whole batch: every image gets the curator's decision where given, else its proposal.

    `decisions`: [{"image": <image id>, "decision": "approve" | "reject"}]. Every image must belong to this
    batch; a batch is decided once. One CuratorDecision row per image, flagged when it overrides the proposal.
    """
    batch = ReviewBatch.objects.select_for_update().select_related("run").filter(pk=batch.pk).first()
    if batch is None:
        raise ConflictError("This review batch no longer exists (the thresholds were changed); reload the run.",
                            code="batch_gone")
    if batch.state == BatchState.DECIDED:
        who = batch.decided_by.get_username() if batch.decided_by else "someone"
        raise ConflictError(
            f"Review batch {batch.number} of run {batch.run_id} was already decided by {who} at "
            f"{batch.decided_at:%Y-%m-%d %H:%M:%S} UTC.", code="already_decided",
        )
    results = {
        r.image_id: r for r in FilterResult.objects.filter(batch=batch).only("id", "image_id", "proposed_decision")
    }
    explicit: dict[int, str] = {}
    for entry in decisions:
        image_id, decision = entry.get("image"), entry.get("decision")
        if decision not in CuratorDecision.Decision.values:
            raise ServiceError(f"Decision for image {image_id} must be 'approve' or 'reject', not {decision!r}.")
        if image_id not in results:
            where = FilterResult.objects.filter(image_id=image_id, batch__isnull=False).exclude(batch=batch).first()
            extra = f" (it is in run {where.run_id})" if where else ""
            raise ServiceError(
                f"Image {image_id} is not in review batch {batch.number} of run {batch.run_id}{extra}.",
                code="not_in_batch",
            )
        if image_id in explicit:
            raise ServiceError(f"Image {image_id} has more than one decision.", code="duplicate_decision")
        explicit[image_id] = decision
    images = {i.pk: i for i in Image.objects.select_for_update().filter(pk__in=list(results)).only("id", "status")}
    wrong = [f"{pk} ({img.status})" for pk, img in images.items() if img.status not in DECIDABLE_STATUSES]
    if wrong:
        raise ConflictError(f"Image(s) {', '.join(wrong)} can no longer be approved or rejected.", code="wrong_status")
    now = timezone.now()
    rows = []
    for image_id, result in results.items():
        proposed = _DECISION_FROM_PROPOSAL.get(result.proposed_decision, CuratorDecision.Decision.REJECT)
        decision = explicit.get(image_id, proposed)
        row = CuratorDecision(batch=batch, image_id=image_id, decision=decision,
                              overrode_proposal=decision != proposed, decided_by=decided_by)
        _full_clean(row, exclude=["batch", "image", "decided_by"], validate_unique=False, validate_constraints=False)
        rows.append(row)
    CuratorDecision.objects.bulk_create(rows)
    approve = [r.image_id for r in rows if r.decision == CuratorDecision.Decision.APPROVE]
    reject = [r.image_id for r in rows if r.decision == CuratorDecision.Decision.REJECT]
    Image.objects.filter(pk__in=approve).update(status=ImageStatus.APPROVED, updated_at=now)
    Image.objects.filter(pk__in=reject).update(status=ImageStatus.REJECTED, updated_at=now)
    batch.state, batch.decided_by, batch.decided_at = BatchState.DECIDED, decided_by, now
    _full_clean(batch, exclude=["run"])
    batch.save(update_fields=["state", "decided_by", "decided_at", "updated_at"])
    _run_counts_add_decisions(run_id=batch.run_id, rows=rows)
    logger.info("review batch %s decided by %s: %s approved, %s rejected, %s overrides", batch.pk,
                decided_by, len(approve), len(reject), sum(r.overrode_proposal for r in rows))
    return batch


# --- the embedding map and saved selections (the image explorer) ----------------------------------------------

EMBEDDING_MAP_TASK = "aesplatform.curation.tasks.embedding_map_compute"


def embedding_map_enqueue(*, run: FilterRun) -> None:
    """Queue the projection of `run`'s embeddings (a 409 when it has none yet; 503 when the queue is down)."""
    from aesplatform.common.jobqueue import job_enqueue_on_commit

    if not FilterResult.objects.filter(run=run, embedding__isnull=False).exists():
        raise ConflictError(f"Filter run {run.pk} has no image embeddings yet: let it score images first.",
                            code="no_embeddings")
    job_enqueue_on_commit(EMBEDDING_MAP_TASK, run.pk)


def embedding_map_compute(*, run_id: int):
    """Project the run's stored CLIP embeddings (the newest per image) to 2-D and store them, replacing an earlier
    map of the run. Returns the EmbeddingMap, or None when the run is gone or has no embeddings."""
    from . import projection
    from .models import EmbeddingMap

    run = FilterRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    rows = list(FilterResult.objects.filter(run=run, embedding__isnull=False).order_by("image_id")
                .values_list("image_id", "embedding"))
    if not rows:
        return None
    vectors = np.stack([np.frombuffer(bytes(raw), dtype=np.float16) for _, raw in rows]).astype(np.float32)
    coords, method = projection.project_2d(vectors)
    points = [[image_id, round(float(x), 5), round(float(y), 5)] for (image_id, _), (x, y) in zip(rows, coords)]
    with transaction.atomic():
        found, _ = EmbeddingMap.objects.update_or_create(
            run=run, defaults={"method": method, "point_count": len(points), "points": points})
    logger.info("embedding map of filter run %s: %s points (%s)", run.pk, len(points), method)
    return found


def image_selection_create(*, image_ids: Sequence[int], created_by, note: str = ""):
    """Save a set of image ids (deduplicated, order kept) for the gallery; unknown ids and an empty or too large
    set are refused (nothing stored)."""
    from .models import ImageSelection, ImageSelectionItem

    ids: list[int] = []
    seen: set[int] = set()
    for raw in image_ids:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            raise ServiceError(f"Not an image id: {raw!r}.", code="invalid_id")
        if raw not in seen:
            seen.add(raw)
            ids.append(raw)
    if not ids:
        raise ServiceError("The selection is empty: select at least one image.", code="empty_selection")
    if len(ids) > limits.SELECTION_MAX_IMAGES:
        raise ServiceError(f"At most {limits.SELECTION_MAX_IMAGES} images in one selection (got {len(ids)}).",
                           code="selection_too_large")
    known: set[int] = set()
    for start in range(0, len(ids), SELECTION_CHUNK):  # chunks: SQLite caps the parameters of one statement
        known.update(Image.objects.filter(pk__in=ids[start:start + SELECTION_CHUNK]).values_list("id", flat=True))
    missing = [i for i in ids if i not in known]
    if missing:
        raise ServiceError(f"No image with id(s) {', '.join(map(str, missing[:10]))}.", code="unknown_images")
    selection = ImageSelection(size=len(ids), note=note[:200], created_by=created_by)
    _full_clean(selection, exclude=["created_by"])
    with transaction.atomic():
        selection.save()
        ImageSelectionItem.objects.bulk_create(
            [ImageSelectionItem(selection=selection, image_id=i) for i in ids], batch_size=SELECTION_CHUNK)
    return selection


SELECTION_CHUNK = 5000
