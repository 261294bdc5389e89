"""Modeling services: training jobs, the model registry (exactly one promoted model) and pre-scoring runs.

Jobs run in the `gpu` queue (modeling/tasks.py; pre-scoring with a released HumanAesExpert checkpoint in the
`humanaesexpert` queue, whose worker runs in that release's pinned runtime) and are safe to deliver twice: the
common job claim (aesplatform.common.jobs) keeps a second delivery from running beside the first; a delivery
after a killed worker (queued by the job sweep) resumes training from the newest checkpoint (model_core resumes
from the same output_dir) and pre-scoring from the first image without a score.

A training job of `processes` > 1 trains in that many processes (model_core.launch: torchrun as a child of the
worker, dying with it); their progress, the stop flag and the result pass through the same reporter as the
in-process run of one process.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from aesplatform.annotation import selectors as annotation_selectors
from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.common import chunks, jobs
from aesplatform.common.exceptions import ConflictError, ServiceError
from aesplatform.common.locks import LockNamespace, advisory_xact_lock
from aesplatform.common.model_cache import LoadedModelCache
from aesplatform.common.models import DIMENSION_FIELDS, JobState
from aesplatform.common.objectstore import (
    CacheWarmer,
    StorageUnavailable,
    local_copies,
    local_copy,
    storage_is_local,
    storage_job_stopped,
)
from aesplatform.common.text import counted
from aesplatform.datasets.models import DatasetItem, DatasetState, DatasetVersion, Split
from aesplatform.datasets.services import training_data_write

from . import checkpoints, limits, presets, selectors
from .active import ActiveLearningUnavailable, active_learning_check, active_priorities
from .models import ModelBackend, ModelVersion, Prescore, PrescoreRun, PrescoreRunChunk, TrainingJob

logger = logging.getLogger(__name__)

LOG_LINES_KEPT = 400
PROGRESS_MIN_INTERVAL_S = 0.5  # between two reads of the stop flag


# --- helpers --------------------------------------------------------------------------------------------------


def training_root() -> Path:
    return Path(settings.AESP_TRAINING_ROOT).resolve()


def image_path(key: str) -> str:
    """Filesystem path of a stored image: the file itself on local storage, else this host's cached copy."""
    storage = default_storage
    if isinstance(storage, FileSystemStorage):
        return os.path.join(os.path.abspath(storage.location), key)
    return str(local_copy(key))


def json_safe(value: Any) -> Any:
    """NaN and infinities -> None, recursively (PostgreSQL's json refuses NaN; degenerate metrics produce it)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# --- training jobs --------------------------------------------------------------------------------------------


@transaction.atomic
def training_job_create(*, dataset_version: DatasetVersion, preset: str, config: dict | None = None, created_by,
                        enqueue: bool = True) -> TrainingJob:
    """Check everything that can be checked before a worker starts, then queue the job on the `gpu` queue."""
    if dataset_version.state != DatasetState.FROZEN:
        raise ConflictError(f"{dataset_version} is a draft: freeze it before training on it.", code="not_frozen")
    n_train = DatasetItem.objects.filter(version=dataset_version, split=Split.TRAIN).count()
    if n_train < 2:
        raise ServiceError(f"{dataset_version} has {counted(n_train, 'training item')}; training needs at least 2.",
                           code="empty_dataset")
    resolved = presets.resolve_config(preset=preset, overrides=config)
    job = TrainingJob(dataset_version=dataset_version, preset=preset, config=resolved, created_by=created_by,
                      state=JobState.PENDING)
    job.full_clean()
    job.save()
    job.output_dir = str(training_root() / f"job-{job.pk}")
    job.save(update_fields=["output_dir", "updated_at"])
    if enqueue:
        jobs.job_enqueue(job=job)
    return job


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Pending (or stalled): cancelled at once. Running: the trainer stops at its next step, writes a checkpoint,
    and the job ends cancelled. Finished jobs cannot be cancelled (409)."""
    return jobs.job_cancel(job=job)


def training_job_resume(*, job: TrainingJob) -> TrainingJob:
    """Queue a failed or stalled job again: training continues from its newest checkpoint."""
    return jobs.job_resume(job=job)


class _JobReporter:
    """Progress callback and stop flag of one training job. Progress is written whenever the trainer reports it (every
    `log_every` steps and at stage changes); the stop flag is read from the database at most every
    PROGRESS_MIN_INTERVAL_S, however often the trainer asks (every optimizer step)."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.job_id = job.pk
        self.curve: list[list[float]] = [list(p) for p in job.loss_curve]
        self.lines: list[str] = job.log.splitlines()
        self.last_stop_check = 0.0
        self.stop = False

    def log(self, message: str) -> None:
        self.lines.append(f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}")
        self.lines = self.lines[-LOG_LINES_KEPT:]
        TrainingJob.objects.filter(pk=self.job_id).update(log="\n".join(self.lines), updated_at=timezone.now())

    def progress(self, p) -> None:
        fields: dict[str, Any] = {"updated_at": timezone.now()}
        if p.stage == "train":
            self.curve = [pt for pt in self.curve if pt[0] < p.step]
            loss = json_safe(float(p.loss)) if p.loss is not None else None
            if loss is not None:
                self.curve.append([p.step, round(loss, 6)])
            fields.update(step=min(p.step, p.total_steps), total_steps=p.total_steps, loss=loss,
                          eta_seconds=p.eta_s, loss_curve=self.curve)
            losses = " ".join(f"{k}={v:.4f}" for k, v in p.losses.items())
            self.lines.append(f"{timezone.now():%Y-%m-%d %H:%M:%S} step {p.step}/{p.total_steps} epoch {p.epoch:.2f} "
                              f"{losses} lr={p.lr:.2e}" + (f" {p.images_per_s:.1f} img/s" if p.images_per_s else ""))
        else:
            fields.update(eta_seconds=p.eta_s)
            self.lines.append(f"{timezone.now():%Y-%m-%d %H:%M:%S} stage {p.stage}")
        self.lines = self.lines[-LOG_LINES_KEPT:]
        fields["log"] = "\n".join(self.lines)
        fields.pop("updated_at")
        jobs.job_progress(job=self.job, **fields)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.stop and now - self.last_stop_check >= PROGRESS_MIN_INTERVAL_S:
            self.last_stop_check = now
            self.stop = jobs.job_should_stop(job=self.job)
        return self.stop


def latest_checkpoint_step(job: TrainingJob) -> int | None:
    """The step of the newest complete checkpoint model_core wrote for this job (training resumes there)."""
    from model_core.training import CHECKPOINTS_DIR, TRAINER_STATE

    root = Path(job.output_dir) / "run" / CHECKPOINTS_DIR
    steps = [int(p.name.split("-")[1]) for p in root.glob("step-*") if (p / TRAINER_STATE).is_file()]
    return max(steps) if steps else None


def training_job_run(*, job_id: int) -> TrainingJob | None:
    """Run (or resume) a training job: write its data, train, evaluate on the test split, register the model.

    Returns the job as it is after this delivery (unchanged when there was nothing to do: finished, cancelled,
    or another worker holds it)."""
    with jobs.job_running(model=TrainingJob, job_id=job_id) as job:
        if job is None:
            return TrainingJob.objects.filter(pk=job_id).first()
        reporter = _JobReporter(job)
        checkpoint = latest_checkpoint_step(job)
        resumed = job.attempts > 1
        reporter.log(("resuming after an interrupted run" if resumed else "started") +
                     f" (preset {job.preset}, dataset {job.dataset_version})" +
                     (f"; continuing from the checkpoint of step {checkpoint}" if checkpoint else ""))
        try:
            from model_core.training import TrainingStopped, train

            output = Path(job.output_dir)
            data = training_data_write(version=job.dataset_version, directory=output / "data")
            reporter.log(f"training data: {data['train']}")
            config = presets.train_config(checkpoints.config_localized(job.config), data=data["train"],
                                          output_dir=str(output / "run"))
            processes = int(job.config.get("processes", 1))
            if processes > 1:
                from model_core.launch import train_processes

                reporter.log(f"training in {processes} processes (log: {output / 'run' / 'launch' / 'train.log'})")
                result = train_processes(config, processes=processes, progress_callback=reporter.progress,
                                         should_stop=reporter.should_stop)
            else:
                result = train(config, progress_callback=reporter.progress, should_stop=reporter.should_stop)
            reporter.log(f"training done in {result.elapsed_s:.0f} s ({result.steps} steps"
                         + (f", resumed from step {result.resumed_from}" if result.resumed_from else "") + ")")
            metrics = _evaluate(job, result, data, reporter)
            if not storage_is_local():
                # the model version is loaded by workers on other hosts: its checkpoint goes to the store before
                # the job succeeds (a failed upload fails the job; a resume uploads it again)
                prefix = checkpoints.checkpoint_upload(job=job)
                reporter.log(f"checkpoint stored under {prefix}")
        except TrainingStopped as exc:
            reporter.log(f"cancelled: {exc}")
            jobs.job_cancelled(job=job, eta_seconds=None)
            return jobs.job_refresh(job)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with its message and traceback
            logger.exception("training job %s failed", job_id)
            reporter.lines.extend(traceback.format_exc().splitlines()[-30:])
            reporter.log(f"failed: {exc}")
            jobs.job_fail(job=job, error=f"{type(exc).__name__}: {exc}", eta_seconds=None)
            return jobs.job_refresh(job)
        try:
            with transaction.atomic():
                finished = jobs.job_succeed(job=job, metrics=json_safe(metrics), eta_seconds=0.0, step=F("total_steps"))
                job = jobs.job_refresh(job)
                if finished and not ModelVersion.objects.filter(training_job=job).exists():
                    model_version_register(training_job=job)
        except Exception as exc:  # noqa: BLE001 - the job must not stay "running" when its bookkeeping fails
            logger.exception("training job %s: recording the result failed", job_id)
            reporter.log(f"failed while recording the result: {exc}")
            jobs.job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
            return jobs.job_refresh(job)
        reporter.log("registered as a model version")
        return job


def _evaluate(job: TrainingJob, result, data: dict[str, str], reporter: _JobReporter) -> list[dict]:
    """Evaluation report on the version's test split (per head and dimension) + model_core's plots."""
    from model_core.evaluation import evaluate
    from model_core.model import load_model

    entry: dict[str, Any] = {"stage": "final", "steps": result.steps, "holdout": result.holdout,
                             "metavoter_fit": result.metavoter, "train_history_tail": result.history[-5:]}
    measured = (result.holdout or {}).get("metavoter_measured") or {}
    if measured:
        plcc = (result.holdout.get("overall_plcc") or {}).get("metavoter")
        reporter.log("held-out MetaVoter PLCC " + (f"{plcc:.3f}" if plcc is not None else "not available") +
                     f" ({measured.get('method')}, {measured.get('folds')} folds, n={measured.get('n')})")
    if Path(data["test"]).stat().st_size == 0:
        reporter.log("the dataset version has no test items: no evaluation report")
        return [entry]
    reporter.log("evaluating on the test split")
    model = load_model(result.final_checkpoint, device=job.config["train"].get("device", "auto"),
                       precision=job.config["train"].get("precision", "auto"))
    report_dir = Path(job.output_dir) / "evaluation"
    report = evaluate(model, data["test"], split="test", max_tiles=job.config["train"].get("max_tiles", 1),
                      output_dir=report_dir, num_workers=0)
    entry["report"] = json.loads((report_dir / "report.json").read_text())
    entry["report_dir"] = str(report_dir)
    overall = {head: m.get("plcc") for head, m in report.overall.items()}
    reporter.log("test PLCC " + ", ".join(f"{h}={v:.3f}" for h, v in overall.items() if v is not None))
    return [entry]


# --- model registry -------------------------------------------------------------------------------------------


def _unique_name(base: str) -> str:
    name, n = base, 1
    while ModelVersion.objects.filter(name=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _detect_backend(path: Path) -> tuple[str, dict]:
    """model_core checkpoint (config.json with its format) or a released HumanAesExpert (remote-code) directory."""
    from model_core.model import CHECKPOINT_FORMAT, ModelLoadError, read_checkpoint_config

    config_file = path / "config.json"
    if not config_file.is_file():
        raise ServiceError(f"{path} has no config.json: not a model checkpoint directory.", code="not_a_checkpoint")
    try:
        payload = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ServiceError(f"{config_file}: unreadable ({exc}).", code="not_a_checkpoint") from None
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        try:
            payload = read_checkpoint_config(path)
        except ModelLoadError as exc:
            raise ServiceError(str(exc), code="not_a_checkpoint") from None
        if not (path / "model.safetensors").is_file():
            raise ServiceError(f"{path}: model.safetensors is missing.", code="not_a_checkpoint")
        return ModelBackend.MODEL_CORE, payload
    text = json.dumps(payload) if isinstance(payload, dict) else ""
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if "HumanAesExpert" in text or (isinstance(payload, dict) and payload.get("auto_map") and has_weights):
        if not has_weights:
            raise ServiceError(f"{path}: a HumanAesExpert config without weights (*.safetensors).",
                               code="not_a_checkpoint")
        keep = {k: payload.get(k) for k in ("architectures", "auto_map", "model_type", "torch_dtype") if k in payload}
        return ModelBackend.HUMANAESEXPERT, keep
    raise ServiceError(f"{path}: neither a model_core checkpoint nor a HumanAesExpert (remote code) checkpoint.",
                       code="not_a_checkpoint")


@transaction.atomic
def model_version_register(*, training_job: TrainingJob | None = None, checkpoint_path: str = "", name: str = "",
                           dataset_version: DatasetVersion | None = None) -> ModelVersion:
    """Register a finished job's model (with its evaluation report), or an existing checkpoint directory."""
    if (training_job is None) == (not checkpoint_path):
        raise ServiceError("Give either a training job or a checkpoint path.", code="invalid")
    if training_job is not None:
        job = TrainingJob.objects.select_for_update().get(pk=training_job.pk)
        if job.state != JobState.SUCCEEDED:
            raise ConflictError(f"Training job {job.pk} is {job.state}; only a succeeded job has a model to register.",
                                code="job_not_succeeded")
        existing = ModelVersion.objects.filter(training_job=job).first()
        if existing is not None:
            return existing
        final = checkpoints.job_final_checkpoint(job)
        checkpoint_key = ""
        if not storage_is_local():
            checkpoint_key = checkpoints.checkpoint_prefix(job)
            if not checkpoints.checkpoint_stored(checkpoint_key):
                raise ConflictError(f"Training job {job.pk}: its checkpoint is not on the object store "
                                    f"({checkpoint_key}); workers on other hosts could not load it.",
                                    code="checkpoint_missing")
        metrics = job.metrics[-1] if job.metrics else {}
        version = ModelVersion(
            name=_unique_name(name or f"{job.preset}-job{job.pk}"), backend=ModelBackend.MODEL_CORE,
            training_job=job, dataset_version=job.dataset_version, checkpoint_path=str(final),
            checkpoint_key=checkpoint_key,
            config=job.config, metrics=json_safe(metrics.get("report", {}) | {"holdout": metrics.get("holdout", {})}),
            report_dir=metrics.get("report_dir", ""),
        )
    else:
        path = Path(checkpoint_path)
        if not path.is_absolute():
            raise ServiceError(f"checkpoint_path must be absolute, got {checkpoint_path!r}.", code="invalid_path")
        if not path.is_dir():
            raise ServiceError(f"{checkpoint_path} is not a directory on this machine.", code="not_a_checkpoint")
        backend, config = _detect_backend(path.resolve())
        report, report_dir = {}, ""
        for candidate in (path / "report.json", path / "evaluation" / "report.json"):
            if candidate.is_file():
                try:
                    report, report_dir = json_safe(json.loads(candidate.read_text())), str(candidate.parent)
                except (OSError, json.JSONDecodeError):
                    pass
                break
        version = ModelVersion(name=_unique_name(name or path.name), backend=backend,
                               checkpoint_path=str(path.resolve()), config=config, metrics=report,
                               report_dir=report_dir, dataset_version=dataset_version)
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def model_version_promote(*, model_version: ModelVersion, user) -> ModelVersion:
    """Make this the one promoted model (the previous one is demoted in the same transaction)."""
    if not advisory_xact_lock(LockNamespace.PROMOTION, 0):
        raise ConflictError("Another promotion is in progress; try again in a moment.", code="promotion_in_progress")
    version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    job = version.training_job
    if job is not None and job.state != JobState.SUCCEEDED:
        raise ConflictError(f"{version.name}: its training job {job.pk} is {job.state}; only a model of a succeeded "
                            "job can be promoted.", code="job_not_succeeded")
    if not checkpoints.checkpoint_available(version):
        raise ConflictError(f"{version.name}: its checkpoint {version.checkpoint_key or version.checkpoint_path} "
                            "is gone.",
                            code="checkpoint_missing")
    if version.promoted:
        return version
    ModelVersion.objects.filter(promoted=True).exclude(pk=version.pk).update(promoted=False, updated_at=timezone.now())
    version.promoted, version.promoted_at, version.promoted_by = True, timezone.now(), user
    try:
        with transaction.atomic():
            version.save(update_fields=["promoted", "promoted_at", "promoted_by", "updated_at"])
    except IntegrityError:
        raise ConflictError("Another model was promoted at the same time; reload and try again.",
                            code="promotion_in_progress") from None
    return version


# --- pre-scoring ----------------------------------------------------------------------------------------------


def _promoted() -> ModelVersion | None:
    return ModelVersion.objects.filter(promoted=True).first()


# A released HumanAesExpert checkpoint scores as the reference does, at 12 tiles + thumbnail; ours at 1 (fast).
DEFAULT_MAX_TILES = {ModelBackend.MODEL_CORE: 1, ModelBackend.HUMANAESEXPERT: 12}


@transaction.atomic
def prescore_run_create(*, created_by, image_ids: list[int] | None = None, model_version: ModelVersion | None = None,
                        max_tiles: int | None = None, batch_size: int = limits.BATCH_SIZE_DEFAULT,
                        enqueue: bool = True) -> PrescoreRun:
    """Queue a pre-scoring pass (default model: the promoted one; default images: every approved image).

    A model_core checkpoint is scored on the `gpu` queue; a released HumanAesExpert checkpoint on the
    `humanaesexpert` queue, whose worker runs in the runtime that release was made for."""
    model_version = model_version or _promoted()
    if model_version is None:
        raise ConflictError("No model is promoted: promote a model version (or name one) before pre-scoring.",
                            code="no_promoted_model")
    if max_tiles is None:
        max_tiles = DEFAULT_MAX_TILES.get(model_version.backend, 1)
    if not limits.MAX_TILES_MIN <= max_tiles <= limits.MAX_TILES_MAX:
        raise ServiceError(
            f"max_tiles must be between {limits.MAX_TILES_MIN} and {limits.MAX_TILES_MAX}.", code="invalid"
        )
    if not limits.BATCH_SIZE_MIN <= batch_size <= limits.BATCH_SIZE_MAX:
        raise ServiceError(f"batch_size must be between {limits.BATCH_SIZE_MIN} and {limits.BATCH_SIZE_MAX}.",
                           code="invalid")
    image_ids = sorted(set(image_ids or []))
    if image_ids:
        found = set(Image.objects.filter(pk__in=image_ids).values_list("pk", flat=True))
        missing = [i for i in image_ids if i not in found]
        if missing:
            raise ServiceError(f"{counted(len(missing), 'unknown image id')}: {', '.join(map(str, missing[:10]))}.",
                               code="unknown_images")
        total = len(image_ids)
    else:
        total = _default_images().count()
        if total == 0:
            raise ServiceError("No approved images to pre-score; choose images or approve some first.",
                               code="no_images")
    run = PrescoreRun(model_version=model_version, image_ids=image_ids, total=total, max_tiles=max_tiles,
                      batch_size=batch_size, created_by=created_by)
    run.full_clean()
    run.save()
    if enqueue:
        jobs.job_enqueue(job=run)
    return run


def _default_images():
    return Image.objects.filter(status__in=[ImageStatus.APPROVED, ImageStatus.IN_CAMPAIGN])


def _run_images(run: PrescoreRun):
    return Image.objects.filter(pk__in=run.image_ids) if run.image_ids else _default_images()


# The loaded model of the version last scored with, per process (see LoadedModelCache).
SCORERS: LoadedModelCache[Any] = LoadedModelCache()


def load_scorer(model_version: ModelVersion, *, device: str = "auto"):
    """The model of a version, cached per process (a worker scores many runs with the same promoted model)."""

    def load():
        # a trained checkpoint on the object store: this host's cached copy of the whole folder
        path = checkpoints.checkpoint_dir(model_version)
        if model_version.backend == ModelBackend.HUMANAESEXPERT:
            from model_core.scoring import RemoteCodeScorer

            return RemoteCodeScorer(path, device=device)
        from model_core.model import load_model

        return load_model(path, device=device, precision="auto")

    return SCORERS.get(model_version.pk, load)


def _clip(value: float | None) -> float | None:
    if value is None or value != value:  # None or NaN
        return None
    return min(1.0, max(0.0, float(value)))


def prescore_rows(model_version_id: int, images: list[tuple[int, str]], scores) -> list[Prescore]:
    """Prescore rows from model_core ImageScores; every score clipped into [0, 1] (the DB CHECKs).

    What the model did not give (None, or NaN) is stored as NULL: no head's score stands in for another's. A
    scored image without a MetaVoter score is an error of the model, not of the image: it stops the run."""
    rows = []
    for (image_id, _), s in zip(images, scores):
        if s.error or s.metavoter_score is None:
            continue
        if _clip(s.metavoter_score) is None:
            raise ValueError(f"the model gave no MetaVoter score (NaN) for image {image_id}")
        expert = [_clip(v) for v in (s.expert_scores or [None] * len(DIMENSION_FIELDS))]
        uncertainty = (
            None if s.uncertainty is None or s.uncertainty != s.uncertainty else max(0.0, float(s.uncertainty))
        )
        row = Prescore(image_id=image_id, model_version_id=model_version_id, metavoter_score=_clip(s.metavoter_score),
                       lm_score=_clip(s.lm_score), regression_score=_clip(s.regression_score), uncertainty=uncertainty)
        row.set_scores(dict(zip(DIMENSION_FIELDS, expert)))
        rows.append(row)
    return rows


def prescore_run_resume(*, run: PrescoreRun) -> PrescoreRun:
    """Queue a failed or stalled run again: only the images this model has not scored yet are scored."""
    return jobs.job_resume(job=run)


def prescore_run_cancel(*, run: PrescoreRun) -> PrescoreRun:
    """Stop a run after its current chunk; the scores written so far stay."""
    return jobs.job_cancel(job=run)


def prescore_run_execute(*, run_id: int, device: str = "auto", storage_retry_s: float | None = None,
                         worker: str = "") -> PrescoreRun | None:
    """Score, batch by batch, the run's images that this model has not scored yet. Resumable and idempotent.

    The worker that takes the run holds it: it cuts what is left into chunks (aesplatform.common.chunks), asks
    AESP_RUN_HELPERS other workers to help (`prescore_run_assist`), scores chunks itself, waits for the others' and
    ends the run once (histograms, campaigns). `worker`: this worker's name in the chunk rows.

    An object store that does not answer stops the run before the chunk it was fetching (no image is marked
    broken for it). With `storage_retry_s` (the task queues the run again after that many seconds) the run goes
    back to pending and StorageUnavailable is raised; without, it fails with the store's message."""
    with jobs.job_running(model=PrescoreRun, job_id=run_id) as run:
        if run is None:
            return PrescoreRun.objects.filter(pk=run_id).first()
        version = run.model_version
        try:
            scorer = load_scorer(version, device=device)
            finished = chunks.run_chunks_work(model=PrescoreRunChunk, job=run, worker=chunks.worker_name(worker),
                                              work=_PrescoreChunkScoring(run, scorer, holder=True),
                                              split=lambda: _prescore_split(run))
            if not finished:
                jobs.job_cancelled(job=run)  # guarded: a no-op when the run is no longer this worker's
                prescore_histograms_refresh(model_version=version)  # what it scored before it stopped
                return jobs.job_refresh(run)
        except StorageUnavailable as exc:
            if storage_job_stopped(job=run, error=exc, retry_in_s=storage_retry_s):
                raise
            return jobs.job_refresh(run)
        except Exception as exc:  # noqa: BLE001
            logger.exception("prescore run %s failed", run_id)
            jobs.job_fail(job=run, error=f"{type(exc).__name__}: {exc}")
            return jobs.job_refresh(run)
        done = _run_images(run).filter(prescores__model_version=version).count()
        if not jobs.job_succeed(job=run, processed=min(done, run.total)):
            return jobs.job_refresh(run)
        prescore_histograms_refresh(model_version=version)
        if version.promoted:
            try:
                refreshed = campaigns_refresh_for_images(image_ids=run.image_ids or None, model_version=version)
            except ActiveLearningUnavailable as exc:
                # the run itself succeeded; only the ordering it would have fed is not possible with this model
                logger.warning("prescore run %s: active-learning campaigns not re-prioritised: %s", run_id, exc)
            else:
                logger.info("prescore run %s: %d open task(s) of active-learning campaigns re-prioritised", run_id,
                            refreshed)
        return jobs.job_refresh(run)


def prescore_run_assist(*, run_id: int, device: str = "auto", worker: str = "") -> dict[str, Any]:
    """Help the worker holding a run: score chunks of it until none is free, then end (at once when none is).
    Never ends the run (its holder does); a failure here gives the chunk back to the others and ends the helper."""
    run = (PrescoreRun.objects.select_related("model_version")
           .filter(pk=run_id, state=JobState.RUNNING, cancel_requested=False).first())
    if run is None or not chunks.chunks_claimable(model=PrescoreRunChunk, job=run):
        return {"run": run_id, "chunks": 0}
    name = chunks.worker_name(worker)
    try:
        work = _PrescoreChunkScoring(run, load_scorer(run.model_version, device=device), holder=False)
        done = chunks.run_chunks_work(model=PrescoreRunChunk, job=run, worker=name, work=work)
    except Exception:  # noqa: BLE001 - the run's holder (or another helper) scores the chunk; the run goes on
        logger.exception("prescore run %s: helper %s failed; its chunk was given back", run_id, name)
        return {"run": run_id, "chunks": 0, "failed": True}
    logger.info("prescore run %s: helper %s scored %s chunk(s)", run_id, name, work.chunks)
    return {"run": run_id, "chunks": work.chunks, "stopped": not done}


def _todo(run: PrescoreRun):
    """The run's images this model has not scored yet (unreadable ones, marked broken, are left out)."""
    return (_run_images(run).exclude(prescores__model_version=run.model_version).exclude(status=ImageStatus.BROKEN)
            .order_by("id"))


def _scoring_call(run: PrescoreRun) -> int:
    """Images per scoring call: several batches at once (the batches stay run.batch_size)."""
    return run.batch_size * 8


def _prescore_split(run: PrescoreRun) -> list[tuple[int, int, int]]:
    """What is left, in chunks of whole scoring calls: every image is scored in the same call (the same batches,
    grouped by tile count within the call) whichever worker takes its chunk."""
    keys = _todo(run).values_list("id", flat=True).iterator(chunk_size=20000)
    return chunks.chunk_bounds(keys, size=chunks.chunk_size_aligned(_scoring_call(run)))


class _PrescoreChunkScoring:
    """Scores what is left of one chunk of a run, one scoring call at a time (the holder's and the helpers' work)."""

    def __init__(self, run: PrescoreRun, scorer, *, holder: bool):
        self.run, self.scorer, self.holder = run, scorer, holder
        # an object store: the next chunk this worker holds is fetched while this one is scored
        self.warmer = CacheWarmer(max_workers=STORAGE_FETCH_THREADS)
        self.chunks = 0

    def stop(self) -> bool:
        """The holder: a cancel, or the run is no longer its own. A helper: the run stopped running, was cancelled,
        or was taken up again by a new holder."""
        if self.holder:
            return jobs.job_should_stop(job=self.run)
        return not PrescoreRun.objects.filter(pk=self.run.pk, state=JobState.RUNNING, attempts=self.run.attempts,
                                              cancel_requested=False).exists()

    def _left(self, lease):
        return _todo(self.run).filter(pk__gte=lease.first_key, pk__lte=lease.last_key)

    def prefetch(self, lease) -> None:
        self.warmer.warm(list(self._left(lease).values_list("file", flat=True)))

    def __call__(self, lease) -> bool:
        left = list(self._left(lease).values_list("id", "file"))
        call = _scoring_call(self.run)
        for start in range(0, len(left), call):
            part, missing = _chunk_files(left[start:start + call])
            _score_chunk(self.run, self.run.model_version, self.scorer, part, missing=missing, lease=lease,
                         alive=self.holder)
            if self.stop():
                return False
        self.chunks += 1
        return True


def prescore_histograms_refresh(*, model_version: ModelVersion) -> ModelVersion:
    """Compute and store the model's pre-score histograms (the Pre-scores page shows them with their time)."""
    at = timezone.now()
    histograms = selectors.prescore_histograms(model_version=model_version)
    ModelVersion.objects.filter(pk=model_version.pk).update(prescore_histograms=histograms, prescore_histograms_at=at)
    model_version.prescore_histograms, model_version.prescore_histograms_at = histograms, at
    return model_version


def prescore_num_workers() -> int:
    """Decode workers of the pre-scoring DataLoader (AESP_PRESCORE_NUM_WORKERS; default 0 = decode in the task).

    On a GPU machine set it to a few (the GPU outruns one decoding core); the gpu task lifts the daemon flag so
    the workers can start. Forked workers of a process whose torch already ran OpenMP threads can hang on CPU-only
    hosts, which is why the default is 0."""
    return max(0, int(settings.AESP_PRESCORE_NUM_WORKERS))


# Threads fetching a chunk's images from an object store at once (each fetch is mostly waiting on the network).
STORAGE_FETCH_THREADS = 8


def _chunk_files(rows: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[int]]:
    """(image id, local path) of a chunk's images, fetched in parallel into this host's cache on an object store,
    and the ids of the images whose file is not stored at all. StorageUnavailable when the store does not answer:
    then nothing of the chunk is scored or marked."""
    paths = local_copies([key for _, key in rows], max_workers=STORAGE_FETCH_THREADS)
    found = [(image_id, str(paths[key])) for image_id, key in rows if paths[key] is not None]
    return found, [image_id for image_id, key in rows if paths[key] is None]


def _score_chunk(run: PrescoreRun, version: ModelVersion, scorer, chunk: list[tuple[int, str]], *,
                 missing: list[int] = (), lease=None, alive: bool = True) -> None:
    """Score a chunk and store its scores; images that could not be scored are marked broken: those whose file
    is not stored (`missing`) or does not decode. A cached copy that was evicted while the chunk waited is not
    the image's fault: that image stays unscored and the next chunk fetches it again. Under a `lease` (a
    PrescoreRunChunk) the images handled are counted on it in the same transaction (LeaseLost when it was taken
    over: nothing written). `alive`: the run's holder (a helper records progress, not a sign of life)."""
    started = time.monotonic()
    paths = [p for _, p in chunk]
    if not paths:  # every image of the chunk is missing from the store
        scores = []
    elif version.backend == ModelBackend.HUMANAESEXPERT:
        scores = scorer.score_images(paths, max_tiles=run.max_tiles, on_bad_image="skip")
    else:
        from model_core.scoring import score_images

        scores = score_images(scorer, paths, max_tiles=run.max_tiles, batch_size=run.batch_size,
                              num_workers=prescore_num_workers(), on_bad_image="skip")
    rows = prescore_rows(version.pk, chunk, scores)
    unscored = [(image_id, path) for (image_id, path), s in zip(chunk, scores) if s.error or s.metavoter_score is None]
    failed = [image_id for image_id, path in unscored if storage_is_local() or os.path.exists(path)]
    evicted = len(unscored) - len(failed)  # left for a later chunk: not counted here
    failed += list(missing)
    with transaction.atomic():
        if lease is not None:
            chunks.chunk_scored_add(chunk=lease, items=len(chunk) + len(missing) - evicted,
                                    seconds=time.monotonic() - started)
        Prescore.objects.bulk_create(rows, ignore_conflicts=True)
        if failed:
            # Unreadable files: marked broken, so the run does not try them forever.
            Image.objects.filter(pk__in=failed).update(status=ImageStatus.BROKEN)
        done = _run_images(run).filter(prescores__model_version=version).count()
        # from the database, whoever scored: several workers write at once, so the count only goes up
        jobs.job_progress(job=run, alive=alive, processed=Greatest(F("processed"), Value(min(done, run.total))))
    if failed:
        logger.warning("prescore run %s: %d unreadable image(s) marked broken", run.pk, len(failed))


def campaign_priorities_refresh(*, campaign, model_version: ModelVersion | None = None) -> int:
    """Re-order a campaign's open tasks by informativeness (task_order "active"); 409 for a random-order one."""
    if not annotation_selectors.campaign_orders_by_activity(campaign):
        raise ConflictError(f"Campaign {campaign.pk} uses task order {campaign.task_order!r}; only 'active' campaigns "
                            "are ordered by informativeness.", code="not_active_learning")
    model_version = model_version or _promoted()
    if model_version is None:
        raise ConflictError("No model is promoted: there are no pre-scores to order by.", code="no_promoted_model")
    return _campaign_reorder(campaign=campaign, model_version=model_version)


def campaigns_refresh_for_images(*, image_ids: list[int] | None, model_version: ModelVersion) -> int:
    """After a pre-scoring run: re-order every open active-learning campaign holding any of these images."""
    return sum(_campaign_reorder(campaign=campaign, model_version=model_version)
               for campaign in annotation_selectors.active_learning_campaigns(image_ids=image_ids))


def _campaign_reorder(*, campaign, model_version: ModelVersion) -> int:
    """The open tasks' priorities from this model's pre-scores, written by the annotation app's service."""
    active_learning_check(model_version)
    return annotation_services.task_priorities_reorder(
        campaign=campaign,
        priorities=lambda image_ids: active_priorities(image_ids=image_ids, model_version=model_version,
                                                       seed=campaign.pk),
    )
