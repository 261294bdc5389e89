"""Reads of the catalog, as QuerySets (the API and the pages filter and paginate them)."""

from __future__ import annotations

from pathlib import Path

from django.db.models import QuerySet

from aesplatform.accounts.roles import Role, user_has_role
from aesplatform.common.models import FINISHED_JOB_STATES

from .models import Image, ImportItem, ImportJob, ImportOutcome
from .sources import allowed_roots


def image_list() -> QuerySet[Image]:
    return Image.objects.all().order_by("id")


def image_files_visible_to(*, user) -> QuerySet[Image]:
    """The images whose pixels `user` may fetch: curators and admins every one; an annotator only the images of
    tasks leased to them (now or before) in campaigns that still list them as an annotator. (Lookups by name
    through the annotation app's reverse relations: the catalog imports nothing of it.)"""
    if user_has_role(user, Role.CURATOR):
        return image_list()
    if not user_has_role(user, Role.ANNOTATOR):
        return Image.objects.none()
    # one filter() call: the assignment and the membership are of the same task
    leased = Image.objects.filter(tasks__assignments__annotator=user, tasks__campaign__annotators=user)
    return Image.objects.filter(pk__in=leased.values("pk")).order_by("id")


def import_job_list() -> QuerySet[ImportJob]:
    return ImportJob.objects.select_related("created_by").order_by("-id")


def import_job_items(*, job: ImportJob) -> QuerySet[ImportItem]:
    return ImportItem.objects.filter(job=job).select_related("image").order_by("id")


def import_job_item_count(*, job: ImportJob, outcome: str = "") -> int | None:
    """How many items the job has (of one outcome, or all of them), from the job's own counters: exact once the
    job has finished (its last write derives them from the items; a resumed job is active again). None while it is
    active: the items are then counted."""
    if job.state not in FINISHED_JOB_STATES:
        return None
    by_outcome = {
        "": job.total,
        ImportOutcome.PENDING: job.total - job.processed,
        ImportOutcome.IMPORTED: job.imported_count,
        ImportOutcome.DUPLICATE: job.duplicate_count,
        ImportOutcome.ERROR: job.error_count,
    }
    return by_outcome.get(outcome)


def import_allowed_roots() -> list[Path]:
    """The server folders that folder, zip and HumanBeauty imports may read (for forms and messages)."""
    return allowed_roots()


def images_approved_count(*, image_ids) -> int:
    """How many of these images are approved (ready for a campaign)."""
    from .models import ImageStatus

    return Image.objects.filter(pk__in=list(image_ids), status=ImageStatus.APPROVED).count()


def storage_orphans(*, older_than_s: float) -> list[str]:
    """Stored files nothing refers to, last written more than `older_than_s` ago (a running import's fresh files
    are never among them): originals and thumbnails no Image row names (an import chunk that an outage or a kill
    interrupted, in a job then cancelled), and staged uploads of import jobs that no longer exist or have
    succeeded or been cancelled (a failed job may still be resumed: its uploads stay)."""
    import time
    from itertools import islice

    from aesplatform.common.models import JobState
    from aesplatform.common.objectstore import storage_walk

    cutoff = time.time() - older_than_s
    orphans: list[str] = []
    for prefix, field in (("images/", "file"), ("thumbs/", "thumbnail")):
        old = (name for name, _size, modified in storage_walk(prefix) if modified < cutoff)
        while batch := list(islice(old, 1000)):
            known = set(Image.objects.filter(**{f"{field}__in": batch}).values_list(field, flat=True))
            orphans.extend(name for name in batch if name not in known)
    staged = [(name, name.split("/")[2]) for name, _size, modified in storage_walk("imports/staging/")
              if modified < cutoff and name.count("/") >= 3]
    job_ids = {int(part) for _name, part in staged if part.isdigit()}
    live = set(ImportJob.objects.filter(pk__in=job_ids).exclude(
        state__in=[JobState.SUCCEEDED, JobState.CANCELLED]).values_list("pk", flat=True))
    orphans.extend(name for name, part in staged if not (part.isdigit() and int(part) in live))
    return orphans
