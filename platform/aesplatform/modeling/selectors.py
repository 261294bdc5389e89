"""Reads of the modeling app (QuerySets)."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import ModelVersion, Prescore, PrescoreRun, TrainingJob


def training_job_list() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("dataset_version", "created_by").order_by("-id")


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("training_job", "dataset_version", "promoted_by").order_by("-id")


def model_version_promoted() -> ModelVersion | None:
    return ModelVersion.objects.filter(promoted=True).first()


def prescore_run_list() -> QuerySet[PrescoreRun]:
    return PrescoreRun.objects.select_related("model_version", "created_by").order_by("-id")


PRESCORE_ORDERINGS = ("metavoter_score", "-metavoter_score", "uncertainty", "-uncertainty", "id", "-id")


def prescore_list(*, model_version: ModelVersion, ordering: str = "-metavoter_score") -> QuerySet[Prescore]:
    return Prescore.objects.filter(model_version=model_version).order_by(ordering, "id")


def histogram(values: list[float], bins: int = 20) -> list[int]:
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def prescore_histograms(*, model_version: ModelVersion, bins: int = 20) -> dict[str, list[int]]:
    rows = list(Prescore.objects.filter(model_version=model_version)
                .values_list("metavoter_score", "lm_score", "regression_score", "uncertainty"))
    names = ("metavoter_score", "lm_score", "regression_score", "uncertainty")
    return {name: histogram([r[i] for r in rows], bins) for i, name in enumerate(names)}
