"""Frozen dataset versions (image, labels, split) and the exports written from them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from aesplatform.common.models import (
    DIMENSION_FIELDS,
    CountedJob,
    DimensionScores,
    JobState,
    TimeStampedModel,
    all_dimensions_present_q,
    score_range_constraints,
)
from model_core.standard import OVERALL

from . import limits


class DatasetState(models.TextChoices):
    DRAFT = "draft"
    FROZEN = "frozen"


class DatasetKind(models.TextChoices):
    """Which labels a version needs: both kinds as each image's labels allow, or one kind for every image."""

    MIXED = "mixed", "Overall-only and expert images"
    EXPERT = "expert", "Expert only (all 12 dimensions required)"
    OVERALL = "overall", "Overall score only"


# Fields that define a frozen version: the database refuses to change them once state is frozen (migration 0002).
FROZEN_VERSION_FIELDS = (
    "name", "version", "state", "kind", "include_imported_labels", "consensus_method", "min_ratings",
    "split_seed", "test_ratio", "code_version", "counts", "frozen_at", "created_by_id",
)


class DatasetVersion(TimeStampedModel):
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=8, choices=DatasetState.choices, default=DatasetState.DRAFT)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=8, choices=DatasetKind.choices, default=DatasetKind.MIXED)
    campaigns = models.ManyToManyField("annotation.Campaign", blank=True, related_name="dataset_versions")
    include_imported_labels = models.BooleanField(default=True)
    consensus_method = models.CharField(max_length=40, default="bt500")
    min_ratings = models.PositiveSmallIntegerField(default=limits.MIN_RATINGS_DEFAULT)
    split_seed = models.BigIntegerField(default=0)
    test_ratio = models.FloatField(default=limits.TEST_RATIO_DEFAULT)
    code_version = models.CharField(max_length=80, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Per split / source / kind, and the balance report.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dataset_versions")
    frozen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="datasetversion_unique_name_version"),
            models.CheckConstraint(
                condition=models.Q(state__in=DatasetState.values), name="datasetversion_state_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(test_ratio__gt=0, test_ratio__lt=1), name="datasetversion_test_ratio_range"
            ),
            models.CheckConstraint(condition=models.Q(kind__in=DatasetKind.values), name="datasetversion_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(state=DatasetState.DRAFT) | models.Q(frozen_at__isnull=False),
                name="datasetversion_frozen_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Split(models.TextChoices):
    TRAIN = "train"
    TEST = "test"


class DatasetItem(DimensionScores):
    """One labelled image of a version. Overall-only items keep the 11 sub-dimensions NULL."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey("catalog.Image", on_delete=models.PROTECT, related_name="dataset_items")
    split = models.CharField(max_length=8, choices=Split.choices)
    is_expert = models.BooleanField()
    source = models.CharField(max_length=200)
    rating_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["version", "id"]
        constraints = [
            *score_range_constraints(DIMENSION_FIELDS, prefix="datasetitem", nullable=True),
            models.UniqueConstraint(fields=["version", "image"], name="datasetitem_unique_image_per_version"),
            models.CheckConstraint(condition=models.Q(split__in=Split.values), name="datasetitem_split_valid"),
            models.CheckConstraint(
                condition=models.Q(**{f"{OVERALL.key}__isnull": False}), name="datasetitem_has_overall"
            ),
            models.CheckConstraint(
                condition=models.Q(is_expert=False) | all_dimensions_present_q(),
                name="datasetitem_expert_has_all_dimensions",
            ),
        ]
        indexes = [models.Index(fields=["version", "split", "is_expert"], name="datasetitem_version_split")]


class ExportFormat(models.TextChoices):
    HUMANBEAUTY = "humanbeauty", "HumanBeauty layout"
    TRAINING_JSONL = "training_jsonl", "Training jsonl (ms-swift style)"


class Export(CountedJob):
    version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    options = models.JSONField(default=dict, blank=True)
    options_digest = models.CharField(max_length=64,
                                      help_text="sha256 of the canonical options: one export per choice.")
    path = models.CharField(max_length=1024, blank=True, help_text="Directory of the finished export.")
    archive_path = models.CharField(max_length=1024, blank=True)
    archive_size = models.PositiveBigIntegerField(null=True, blank=True)
    archive_key = models.CharField(
        max_length=1024, blank=True,
        help_text="The archive's object on the object store (exports made there have no folder: `path` is empty).")
    manifest = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exports")

    job_task = "aesplatform.datasets.tasks.export_run"

    class Meta(CountedJob.Meta):
        ordering = ["-id"]
        constraints = [
            *CountedJob.Meta.constraints,
            models.UniqueConstraint(
                fields=["version", "format", "options_digest"],
                condition=~models.Q(state__in=[JobState.FAILED, JobState.CANCELLED]),
                name="export_one_live_per_version_format_options",
            ),
            models.CheckConstraint(condition=models.Q(format__in=ExportFormat.values), name="export_format_valid"),
        ]
