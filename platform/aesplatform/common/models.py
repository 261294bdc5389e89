"""Building blocks shared by the apps' models (abstract only: this package is not an installed app)."""

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
