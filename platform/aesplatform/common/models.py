"""Building blocks shared by the apps' models (abstract only: the common app has no tables of its own)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from model_core.standard import DIMENSIONS, OVERALL, SCORE_MAX, SCORE_MIN


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class JobState(models.TextChoices):
    """Life cycle of every background job (import, filter run, export, training, pre-scoring)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATES = (JobState.PENDING, JobState.RUNNING)
FINISHED_JOB_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Job(TimeStampedModel):
    """The life cycle every background job shares (import, filter run, export, training, pre-scoring).

    Writes go through aesplatform.common.jobs (claim, heartbeat, progress, cancel, fail, succeed, resume); the
    kind-specific work stays in its app. `attempts` counts claims and doubles as the owner's token: every write a
    worker makes is guarded by it, so a worker that was given up on (its heartbeat went stale and the job was
    claimed again) can no longer change the job. `heartbeat_at` is the last sign of life: set when the job is
    queued and claimed, then every few seconds by the running worker (the periodic sweep re-queues the job once
    it is older than AESP_JOB_STALE_S). Concrete models name the Celery task that runs them (`job_task_name`).
    """

    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.PENDING, db_index=True)
    error = models.TextField(blank=True, help_text="Why the job failed (or why it was last interrupted).")
    cancel_requested = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of the job's worker.")
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed the job.")

    job_task = ""  # the Celery task (name) that runs a job of this kind, with its id as the only argument
    assist_task = ""  # the task of a worker that helps with a job of this kind (aesplatform.common.chunks); none

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=JobState.values), name="%(class)s_state_valid"),
        ]

    def job_task_name(self) -> str:
        return self.job_task

    def assist_task_name(self) -> str:
        return self.assist_task

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES

    @property
    def is_stalled(self) -> bool:
        """Running (or queued) with no sign of life for longer than AESP_JOB_STALE_S: its worker died or its
        message was lost; the sweep re-queues it (the page says "stalled, resuming")."""
        from .jobs import job_is_stale

        return job_is_stale(self)


class CountedJob(Job):
    """A job over a number of items known when it starts: `processed` of `total` (never more, a CHECK)."""

    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)

    class Meta(Job.Meta):
        abstract = True
        constraints = [
            *Job.Meta.constraints,
            models.CheckConstraint(condition=models.Q(processed__lte=models.F("total")),
                                   name="%(class)s_processed_le_total"),
        ]


class ChunkState(models.TextChoices):
    """A chunk of a run shared by several workers (aesplatform.common.chunks)."""

    PENDING = "pending"  # nobody works on it (never claimed, or given back)
    LEASED = "leased"  # a worker works on it until `lease_until`; after that anyone may take it over
    DONE = "done"


class WorkChunk(models.Model):
    """One claimable piece of a run that several workers share (filter run, pre-scoring run).

    The concrete model adds `run` (the job, a ForeignKey) and UNIQUE(run, index). The chunk holds the run's items
    whose key lies in [first_key, last_key] (FilterResult ids, image ids: the kind says) and that are still left
    when it is scored; `size` is how many there were when the run was split. Claims, lease renewals and the
    finish are the writes of aesplatform.common.chunks, guarded by `attempts` (the holder's token) as jobs are.
    `scored` counts the items scored under this chunk, written in the same transaction as their results: the sum
    over a run's chunks says how many times its items went through the model (each once: the sum is the total)."""

    index = models.PositiveIntegerField(help_text="Position of the chunk in its run (scored in this order).")
    first_key = models.BigIntegerField()
    last_key = models.BigIntegerField()
    size = models.PositiveIntegerField(help_text="Items in the chunk when the run was split.")
    state = models.CharField(max_length=8, choices=ChunkState.choices, default=ChunkState.PENDING)
    leased_by = models.CharField(max_length=200, blank=True, help_text="The worker holding (or that last held) it.")
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed the chunk.")
    scored = models.PositiveIntegerField(default=0, help_text="Items scored under this chunk (all its attempts).")
    seconds = models.FloatField(default=0.0, help_text="Worker time spent scoring them (wall clock).")
    done_by = models.CharField(max_length=200, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=ChunkState.values), name="%(class)s_state_valid"),
            models.CheckConstraint(condition=models.Q(first_key__lte=models.F("last_key")),
                                   name="%(class)s_keys_ordered"),
            models.CheckConstraint(condition=models.Q(seconds__gte=0), name="%(class)s_seconds_not_negative"),
            models.CheckConstraint(
                condition=models.Q(state=ChunkState.PENDING)
                | models.Q(state=ChunkState.LEASED, lease_until__isnull=False, attempts__gt=0)
                | models.Q(state=ChunkState.DONE, done_at__isnull=False),
                name="%(class)s_state_fields"),
        ]


def score_field(*, label: str, **kwargs) -> models.FloatField:
    return models.FloatField(
        verbose_name=label,
        validators=[MinValueValidator(SCORE_MIN), MaxValueValidator(SCORE_MAX)],
        **kwargs,
    )


def score_range_q(field: str, *, nullable: bool) -> models.Q:
    in_range = models.Q(**{f"{field}__gte": SCORE_MIN, f"{field}__lte": SCORE_MAX})
    return (models.Q(**{f"{field}__isnull": True}) | in_range) if nullable else in_range


def score_range_constraints(fields: list[str], *, prefix: str, nullable: bool) -> list[models.CheckConstraint]:
    """CHECK 0 <= score <= 1 for each field, so that the database itself refuses 1.5."""
    return [
        models.CheckConstraint(
            condition=score_range_q(field, nullable=nullable), name=f"{prefix}_{field}_in_unit_range"
        )
        for field in fields
    ]


class DimensionScores(models.Model):
    """One nullable float column per dimension of the standard, generated from model_core.standard.

    NULL means unknown (an overall-only label leaves the 11 sub-dimensions NULL, never zero). Concrete models
    add `score_range_constraints(DIMENSION_FIELDS, ...)` to their Meta.
    """

    for _dimension in DIMENSIONS:
        locals()[_dimension.key] = score_field(label=_dimension.name, null=True, blank=True)
    del _dimension

    class Meta:
        abstract = True

    def scores_list(self) -> list[float | None]:
        """The 12 scores in the standard's order (None where unknown)."""
        return [getattr(self, d.key) for d in DIMENSIONS]

    def scores_dict(self) -> dict[str, float | None]:
        return {d.key: getattr(self, d.key) for d in DIMENSIONS}

    def set_scores(self, scores: dict[str, float | None]) -> None:
        for key, value in scores.items():
            setattr(self, key, value)

    @property
    def overall_score(self) -> float | None:
        return getattr(self, OVERALL.key)

    @property
    def has_all_dimensions(self) -> bool:
        return all(getattr(self, d.key) is not None for d in DIMENSIONS)


DIMENSION_FIELDS: list[str] = [d.key for d in DIMENSIONS]


def all_dimensions_present_q() -> models.Q:
    q = models.Q()
    for field in DIMENSION_FIELDS:
        q &= models.Q(**{f"{field}__isnull": False})
    return q
