"""Reads of the catalog, as QuerySets (the API and the pages filter and paginate them)."""

from __future__ import annotations

from pathlib import Path

from django.db.models import QuerySet

from .models import Image, ImportItem, ImportJob
from .sources import allowed_roots


def image_list() -> QuerySet[Image]:
    return Image.objects.all().order_by("id")


def import_job_list() -> QuerySet[ImportJob]:
    return ImportJob.objects.select_related("created_by").order_by("-id")


def import_job_items(*, job: ImportJob) -> QuerySet[ImportItem]:
    return ImportItem.objects.filter(job=job).select_related("image").order_by("id")


def import_allowed_roots() -> list[Path]:
    """The server folders that folder, zip and HumanBeauty imports may read (for forms and messages)."""
    return allowed_roots()
