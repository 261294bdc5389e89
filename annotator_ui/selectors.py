"""Reads for the server-rendered pages (HackSoft style: functions returning QuerySets or plain data).

Everything a list page shows per row is annotated in the page's own query (counts as correlated subqueries, so
that several counts never multiply each other's joins), so a page costs a fixed number of queries whatever the
number of rows. The image gallery pages by keyset (id), never by OFFSET and never with a COUNT(*) of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from aesplatform.accounts.roles import Role
from aesplatform.annotation.models import (
    Annotation,
    AnnotationReview,
    Assignment,
    AssignmentState,
    Campaign,
    CampaignState,
)
from aesplatform.catalog.models import Image, ImageStatus, ImportJob
from aesplatform.curation.models import BatchState, FilterRun, ReviewBatch
from aesplatform.datasets.models import DatasetItem, DatasetVersion, Export
from aesplatform.modeling.models import ModelVersion, TrainingJob

from .gallery import GALLERY_PAGE_SIZE, GalleryFilters, GalleryPage, gallery_page

__all__ = ["GALLERY_PAGE_SIZE", "GalleryPage", "image_gallery_page"]  # the gallery's names, read from here too


def _count(model, fk: str, **filters) -> Coalesce:
    """COUNT(*) of `model` rows whose `fk` points at the outer row, as a correlated subquery."""
    rows = (
        model.objects.filter(**{fk: OuterRef("pk")}, **filters)
        .order_by()
        .values(fk)
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


# --- annotators -------------------------------------------------------------------------------------------------


def annotator_active_campaigns(*, user) -> QuerySet[Campaign]:
    """Active campaigns that list `user` as an annotator, with their stored task progress (the user's own counts:
    annotator_submitted_by_campaign)."""
    return (
        Campaign.objects.filter(state=CampaignState.ACTIVE, annotators=user)
        .annotate(
            **_stored_counts(),
        )
        .order_by("-id")
    )


def annotator_submitted_by_campaign(*, user, campaign_ids) -> dict[int, int]:
    """campaign id -> the user's original annotations in it, in one statement (from the user's annotations: a
    per-campaign subquery would walk every task of each campaign)."""
    return dict(
        Annotation.objects.filter(annotator=user, supersedes__isnull=True, task__campaign_id__in=list(campaign_ids))
        .order_by().values_list("task__campaign_id").annotate(n=Count("id"))
    )


@dataclass
class WorkSummary:
    submitted: int = 0
    leased: int = 0
    skipped: int = 0
    flagged: int = 0
    time_spent_ms: int = 0

    @property
    def time_spent_minutes(self) -> int:
        return round(self.time_spent_ms / 60000)


def annotator_work_summary(*, user) -> WorkSummary:
    by_state = dict(
        Assignment.objects.filter(annotator=user).order_by().values_list("state").annotate(n=Count("*"))
    )
    spent = Annotation.objects.filter(annotator=user).aggregate(ms=Coalesce(Sum("time_spent_ms"), 0))["ms"]
    return WorkSummary(
        submitted=by_state.get(AssignmentState.SUBMITTED, 0),
        leased=by_state.get(AssignmentState.LEASED, 0),
        skipped=by_state.get(AssignmentState.SKIPPED, 0),
        flagged=by_state.get(AssignmentState.FLAGGED, 0),
        time_spent_ms=spent,
    )


def annotator_annotations(*, user) -> QuerySet[Annotation]:
    """The user's submitted annotations, newest first, with what a row of "My work" shows: whether it is the
    current version (`is_current`: only that one can be edited) and a curator's verdict on the rating
    (`review_state`)."""
    current = Annotation.objects.filter(supersedes=OuterRef("pk"))
    verdict = AnnotationReview.objects.filter(
        annotation__task_id=OuterRef("task_id"), annotation__annotator_id=OuterRef("annotator_id")
    ).values("state")[:1]
    return (
        Annotation.objects.filter(annotator=user)
        .select_related("task__campaign")
        .only(
            "id", "created_at", "is_expert", "time_spent_ms", "comprehensive", "supersedes_id",
            "task__id", "task__image_id", "task__campaign__id", "task__campaign__name", "task__campaign__mode",
            "task__campaign__state",
        )
        .annotate(is_current=~Exists(current), review_state=Subquery(verdict))
        .order_by("-id")
    )


# --- curators ---------------------------------------------------------------------------------------------------


def image_status_counts() -> dict[str, int]:
    """Images per status (one GROUP BY over the (status, id) index); every status present, zeros included."""
    counts = dict(Image.objects.order_by().values_list("status").annotate(n=Count("*")))
    return {status: counts.get(status, 0) for status in ImageStatus.values}


def import_jobs_recent(*, limit: int = 5) -> list[ImportJob]:
    return list(ImportJob.objects.select_related("created_by").order_by("-id")[:limit])


def filter_runs_recent(*, limit: int = 5) -> list[FilterRun]:
    return list(filter_run_list()[:limit])


def import_source_names(*, limit: int = 200) -> list[str]:
    """Source names recorded by import jobs (a small table), offered as suggestions in the gallery filter."""
    return list(
        ImportJob.objects.exclude(source_name="")
        .order_by("source_name")
        .values_list("source_name", flat=True)
        .distinct()[:limit]
    )


def image_gallery_page(
    *,
    status: str = "",
    source: str = "",
    after: int | str | None = None,
    before: int | None = None,
    page_size: int = GALLERY_PAGE_SIZE,
    filters: GalleryFilters | None = None,
) -> GalleryPage:
    """One page of the gallery (annotator_ui/gallery.py): newest first by keyset on id unless `filters` sort by a
    signal; costs one query, plus one EXISTS probe for the opposite direction when an id cursor is given."""
    filters = filters or GalleryFilters(status=status, source=source)
    return gallery_page(filters, after=after, before=before, page_size=page_size)


def filter_run_list() -> QuerySet[FilterRun]:
    return (
        FilterRun.objects.select_related("created_by")
        .annotate(
            batch_total=_count(ReviewBatch, "run"),
            batch_pending=_count(ReviewBatch, "run", state=BatchState.PENDING),
        )
        .order_by("-id")
    )


def _stored_counts():
    """The counts a campaign row shows, as stored by the worker (CampaignSnapshot, as of `counts_as_of`): counting a
    million tasks per campaign per request is not affordable. NULL where a campaign has none yet (see
    campaign_counts_filled)."""
    return dict(task_total=F("snapshot__tasks"), task_done=F("snapshot__tasks_done"),
                annotation_count=F("snapshot__annotations"), counts_as_of=F("snapshot__computed_at"))


def campaign_list() -> QuerySet[Campaign]:
    """Campaigns with their stored counts and their annotators (few: counted live)."""
    return (
        Campaign.objects.select_related("created_by")
        .annotate(**_stored_counts(), annotator_count=_count(Campaign.annotators.through, "campaign"))
        .order_by("-id")
    )


def dataset_version_list() -> QuerySet[DatasetVersion]:
    return (
        DatasetVersion.objects.select_related("created_by")
        .annotate(
            item_total=_count(DatasetItem, "version"),
            item_train=_count(DatasetItem, "version", split="train"),
            item_test=_count(DatasetItem, "version", split="test"),
            export_count=_count(Export, "version"),
        )
        .order_by("name", "-version")
    )


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("dataset_version", "promoted_by").order_by("-promoted", "-id")


def training_job_list() -> QuerySet[TrainingJob]:
    return (TrainingJob.objects.select_related("dataset_version", "created_by")
            .defer("log", "loss_curve").order_by("-id"))


# --- admins -----------------------------------------------------------------------------------------------------


def user_counts_by_role() -> dict[str, int]:
    """Active users per role membership (admins: the admin group or superusers), plus the total."""
    users = get_user_model().objects.filter(is_active=True)
    counts = users.aggregate(
        total=Count("id", distinct=True),
        admin=Count("id", filter=Q(is_superuser=True) | Q(groups__name=Role.ADMIN.value), distinct=True),
        curator=Count("id", filter=Q(groups__name=Role.CURATOR.value), distinct=True),
        annotator=Count("id", filter=Q(groups__name=Role.ANNOTATOR.value), distinct=True),
    )
    return counts


# --- the first steps of a new team (home page) ----------------------------------------------------------------


def first_steps_state(*, user) -> dict:
    """Whether each later step of the work has happened at all, and the first batch waiting for review: one query
    (EXISTS subqueries over a one-row select of the user)."""
    from django.db.models import Exists

    pending_batch = ReviewBatch.objects.filter(state=BatchState.PENDING).order_by("run_id", "number")
    row = (
        get_user_model().objects.filter(pk=user.pk).annotate(
            has_campaign=Exists(Campaign.objects.all()),
            has_annotation=Exists(Annotation.objects.all()),
            has_dataset=Exists(DatasetVersion.objects.all()),
            has_model=Exists(TrainingJob.objects.filter(state="succeeded")) | Exists(ModelVersion.objects.all()),
            next_batch=Subquery(pending_batch.values("pk")[:1]),
        ).values("has_campaign", "has_annotation", "has_dataset", "has_model", "next_batch").first()
    )
    return row or {"has_campaign": False, "has_annotation": False, "has_dataset": False, "has_model": False,
                   "next_batch": None}


def demo_users_exist() -> bool:
    """demo_setup's users (their addresses end in @demo.invalid) are there: `make run`'s demo installation."""
    return get_user_model().objects.filter(email__endswith="@demo.invalid").exists()
