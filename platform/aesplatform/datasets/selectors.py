"""Reads of the datasets app: QuerySets only."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import DatasetItem, DatasetVersion, Export


def dataset_version_list() -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.select_related("created_by").prefetch_related("campaigns").order_by("-id")


def dataset_version_get(*, pk: int) -> DatasetVersion:
    return dataset_version_list().get(pk=pk)


def dataset_item_list(*, version: DatasetVersion, split: str | None = None) -> QuerySet[DatasetItem]:
    items = DatasetItem.objects.filter(version=version).select_related("image").order_by("id")
    return items.filter(split=split) if split else items


def export_list(*, version: DatasetVersion | None = None) -> QuerySet[Export]:
    exports = Export.objects.select_related("version", "created_by").order_by("-id")
    return exports.filter(version=version) if version is not None else exports


def training_jsonl_exports(*, version_id: int) -> QuerySet[Export]:
    """The succeeded training-jsonl exports of a version, newest first."""
    from aesplatform.common.models import JobState

    from .models import ExportFormat

    return Export.objects.filter(version_id=version_id, format=ExportFormat.TRAINING_JSONL,
                                 state=JobState.SUCCEEDED).order_by("-id")
