"""Reads of the modeling app (QuerySets)."""

from __future__ import annotations

from django.db.models import F, QuerySet

from .active import active_learning_check, active_priorities
from .models import ModelVersion, Prescore, PrescoreRun, TrainingJob


def training_job_list() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("dataset_version", "created_by", "model_version").order_by("-id")


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("training_job", "dataset_version", "promoted_by").order_by("-id")


def model_version_promoted() -> ModelVersion | None:
    return ModelVersion.objects.filter(promoted=True).first()


def prescore_run_list() -> QuerySet[PrescoreRun]:
    return PrescoreRun.objects.select_related("model_version", "created_by").order_by("-id")


PRESCORE_ORDERINGS = ("metavoter_score", "-metavoter_score", "uncertainty", "-uncertainty", "id", "-id")


def prescore_list(*, model_version: ModelVersion, ordering: str = "-metavoter_score") -> QuerySet[Prescore]:
    """Sorted by one column; rows without a value there (not given by the model) come last either way. A column
    that is never NULL is ordered plainly, so that the index of the default order (prescore_by_metavoter) serves it."""
    name = ordering.lstrip("-")
    field = F(name)
    nulls_last = True if Prescore._meta.get_field(name).null else None
    order = field.desc(nulls_last=nulls_last) if ordering.startswith("-") else field.asc(nulls_last=nulls_last)
    return Prescore.objects.filter(model_version=model_version).order_by(order, "id")


def histogram(values: list[float | None], bins: int = 20) -> list[int]:
    """Counts per bin over [0, 1]; None (a value the model does not give) is not counted."""
    counts = [0] * bins
    for v in values:
        if v is not None:
            counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def prescore_histograms(*, model_version: ModelVersion, bins: int = 20) -> dict[str, list[int] | None]:
    """Histogram per column; None for a column the model gives no value in (shown as "not available")."""
    rows = list(Prescore.objects.filter(model_version=model_version)
                .values_list("metavoter_score", "lm_score", "regression_score", "uncertainty"))
    names = ("metavoter_score", "lm_score", "regression_score", "uncertainty")
    out: dict[str, list[int] | None] = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        out[name] = None if rows and all(v is None for v in values) else histogram(values, bins)
    return out


# --- reads for the other apps ---------------------------------------------------------------------------------


def prescore_latest(*, image_id: int) -> Prescore | None:
    """The newest pre-score of an image, whichever model gave it (the annotation page shows it)."""
    return Prescore.objects.filter(image_id=image_id).order_by("-id").first()


def active_learning_priorities(*, image_ids: list[int], seed: int) -> dict[int, float]:
    """image id -> task priority (higher first) by the promoted model's informativeness: head disagreement,
    uncertainty and embedding diversity, the same order `campaign_priorities_refresh` writes later; images it
    never pre-scored get a random priority below every pre-scored one. Another model's pre-scores are not read."""
    return active_priorities(image_ids=image_ids, model_version=model_version_promoted(), seed=seed)


def promoted_model_active_learning_check() -> None:
    """Raise ActiveLearningUnavailable (409) when the promoted model's pre-scores cannot order tasks by
    informativeness (a model that gives no uncertainty is refused, never read as "all equally certain")."""
    active_learning_check(model_version_promoted())
