"""Campaigns, leased tasks, immutable annotations, consensus and agreement.

Invariants held by the database: UNIQUE(task, annotator) for assignments and for original annotations (a
correction is a new row that supersedes, so the history stays), CHECK 0 <= score <= 1 on every dimension,
a client idempotency key that is UNIQUE, and one consensus row per (image, dimension, campaign-or-import).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from aesplatform.common.models import (
    DIMENSION_FIELDS,
    DimensionScores,
    TimeStampedModel,
    all_dimensions_present_q,
    score_range_constraints,
    score_range_q,
)
from model_core.standard import DIMENSIONS, NUM_DIMENSIONS, OVERALL

from . import consensus as consensus_math
from . import limits


class ConsensusMethod(models.TextChoices):
    """How a campaign's consensus is computed (annotation.consensus; docs/label-quality.md)."""

    P910_MLE = consensus_math.P910_MLE, consensus_math.METHOD_NAMES[consensus_math.P910_MLE]
    BT500_MOS = consensus_math.BT500_MOS, consensus_math.METHOD_NAMES[consensus_math.BT500_MOS]
    BT500 = consensus_math.BT500, consensus_math.METHOD_NAMES[consensus_math.BT500]
    MEAN = consensus_math.MEAN, consensus_math.METHOD_NAMES[consensus_math.MEAN]


class CampaignMode(models.TextChoices):
    OVERALL = "overall", "Overall score only"
    EXPERT = "expert", "Expert: all 12 dimensions"


class CampaignState(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    CLOSED = "closed"


class TaskOrder(models.TextChoices):
    RANDOM = "random", "Random"
    ACTIVE_LEARNING = "active", "Most informative first (active learning)"


class Campaign(TimeStampedModel):
    name = models.CharField(max_length=limits.CAMPAIGN_NAME_MAX_LENGTH)
    mode = models.CharField(max_length=8, choices=CampaignMode.choices)
    redundancy = models.PositiveSmallIntegerField(
        default=limits.REDUNDANCY_DEFAULT,
        validators=[MinValueValidator(limits.REDUNDANCY_MIN), MaxValueValidator(limits.REDUNDANCY_MAX)],
        help_text="Distinct annotators per image."
    )
    gold_ratio = models.FloatField(default=limits.GOLD_RATIO_DEFAULT,
                                   validators=[MinValueValidator(limits.GOLD_RATIO_MIN),
                                               MaxValueValidator(limits.GOLD_RATIO_MAX)])
    show_prescores = models.BooleanField(default=False, help_text="Hidden by default, to avoid anchoring.")
    instructions = models.TextField(blank=True)
    state = models.CharField(max_length=8, choices=CampaignState.choices, default=CampaignState.DRAFT, db_index=True)
    task_order = models.CharField(max_length=8, choices=TaskOrder.choices, default=TaskOrder.RANDOM)
    lease_seconds = models.PositiveIntegerField(default=limits.LEASE_SECONDS_DEFAULT,
                                                validators=[MinValueValidator(limits.LEASE_SECONDS_MIN)])
    consensus_method = models.CharField(
        max_length=16, choices=ConsensusMethod.choices, default=consensus_math.DEFAULT_METHOD,
        help_text="How the consensus is computed; changing it recomputes every consensus row of the campaign.",
    )
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="campaigns")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="created_campaigns")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(mode__in=CampaignMode.values), name="campaign_mode_valid"),
            models.CheckConstraint(condition=models.Q(state__in=CampaignState.values), name="campaign_state_valid"),
            models.CheckConstraint(
                condition=models.Q(redundancy__gte=limits.REDUNDANCY_MIN), name="campaign_redundancy_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(gold_ratio__gte=limits.GOLD_RATIO_MIN, gold_ratio__lte=limits.GOLD_RATIO_MAX),
                name="campaign_gold_ratio_range",
            ),
            models.CheckConstraint(
                condition=models.Q(lease_seconds__gte=limits.LEASE_SECONDS_MIN), name="campaign_lease_min"
            ),
            models.CheckConstraint(
                condition=models.Q(consensus_method__in=ConsensusMethod.values), name="campaign_consensus_method_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TaskState(models.TextChoices):
    OPEN = "open"  # still needs annotations
    DONE = "done"  # `redundancy` distinct annotators submitted


class Task(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="tasks")
    image = models.ForeignKey("catalog.Image", on_delete=models.PROTECT, related_name="tasks")
    is_gold = models.BooleanField(default=False)
    priority = models.FloatField(default=0.0, help_text="Higher first; random order draws it at random.")
    state = models.CharField(max_length=8, choices=TaskState.choices, default=TaskState.OPEN)
    submitted_count = models.PositiveSmallIntegerField(default=0)
    active_lease_count = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "image"], name="task_unique_image_per_campaign"),
            models.CheckConstraint(condition=models.Q(state__in=TaskState.values), name="task_state_valid"),
        ]
        indexes = [
            # The next-task query walks this partial index in priority order and skips locked rows.
            models.Index(
                fields=["campaign", "-priority", "id"], condition=models.Q(state="open"), name="task_open_by_priority"
            ),
            # the review stream's gold failures start from the campaign's gold tasks
            models.Index(fields=["campaign"], condition=models.Q(is_gold=True), name="task_gold"),
        ]


class AssignmentState(models.TextChoices):
    LEASED = "leased"
    SUBMITTED = "submitted"
    SKIPPED = "skipped"
    FLAGGED = "flagged"
    EXPIRED = "expired"


class Assignment(models.Model):
    """A task leased to one annotator. UNIQUE(task, annotator): nobody sees the same image twice in a campaign."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments")
    state = models.CharField(max_length=10, choices=AssignmentState.choices, default=AssignmentState.LEASED)
    leased_at = models.DateTimeField(auto_now_add=True)
    leased_until = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="assignment_unique_annotator_per_task"),
            models.CheckConstraint(condition=models.Q(state__in=AssignmentState.values), name="assignment_state_valid"),
            models.CheckConstraint(
                condition=models.Q(leased_until__gt=models.F("leased_at")), name="assignment_lease_after_start"
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "state"], name="assignment_annotator_state"),
            models.Index(fields=["leased_until"], condition=models.Q(state="leased"), name="assignment_live_leases"),
            # the review stream's flagged images start from the flags
            models.Index(fields=["task"], condition=models.Q(state="flagged"), name="assignment_flagged"),
        ]


class Annotation(DimensionScores):
    """Immutable once submitted. A correction is a new row whose `supersedes` points at the one it replaces."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="annotations")
    # the task's campaign, kept on the row (set from the task on save) so that a campaign's ratings are read from
    # an index of their own, in submission or deviation order (the review stream), without a join to the tasks
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="+", editable=False, blank=True,
                                 db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="annotations")
    is_expert = models.BooleanField(help_text="All 12 dimensions given (expert mode) or only the overall score.")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    # A correction (a row that supersedes another) says who made it and why: the annotator themselves (My work,
    # the API) or a curator in the review stream. An original rating has neither.
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="corrections_made"
    )
    correction_reason = models.CharField(max_length=limits.REVIEW_REASON_MAX_LENGTH, blank=True)
    idempotency_key = models.UUIDField(unique=True, default=uuid.uuid4,
                                       help_text="Client key: a retried submit stores once.")
    time_spent_ms = models.PositiveIntegerField(default=0)
    ui_version = models.CharField(max_length=limits.UI_VERSION_MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The largest |score - the campaign's consensus| over the rated dimensions, as the last consensus recomputation
    # stored it (services.review_deviations_store): the review stream's "far from the consensus first" order reads
    # it from an index. NULL: not computed yet (a rating newer than the last recomputation, or no consensus).
    review_deviation = models.FloatField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["campaign", "id"], name="annotation_campaign_id"),
            # and, on PostgreSQL, annotation_campaign_deviation (campaign, review_deviation DESC NULLS LAST, id):
            # created by migration 0005 (SQLite has no NULLS LAST in an index)
        ]
        constraints = [
            *score_range_constraints(DIMENSION_FIELDS, prefix="annotation", nullable=True),
            models.UniqueConstraint(
                fields=["task", "annotator"],
                condition=models.Q(supersedes__isnull=True),
                name="annotation_one_original_per_task_annotator",
            ),
            models.CheckConstraint(
                condition=models.Q(**{f"{OVERALL.key}__isnull": False}), name="annotation_has_overall"
            ),
            models.CheckConstraint(
                condition=models.Q(is_expert=False) | all_dimensions_present_q(),
                name="annotation_expert_has_all_dimensions",
            ),
            models.CheckConstraint(
                condition=models.Q(supersedes__isnull=True, corrected_by__isnull=True, correction_reason="")
                | models.Q(supersedes__isnull=False, corrected_by__isnull=False),
                name="annotation_correction_has_author",
            ),
        ]

    def save(self, *args, **kwargs):
        if self.campaign_id is None and self.task_id is not None:
            self.campaign_id = self.task.campaign_id
        super().save(*args, **kwargs)


class ReviewState(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    CORRECTED = "corrected", "Corrected by a curator"
    REJECTED = "rejected", "Rejected (left out of the consensus)"


class AnnotationReview(models.Model):
    """A curator's verdict on one rating: one row per rating, on its original annotation (the chain's first row;
    its corrections share it). No row: not reviewed yet. `version` is the annotation version the curator saw (a
    later correction by the annotator makes the rating "not reviewed" again). A rejected rating is left out of the
    consensus until a curator accepts it again; a rejection says why."""

    annotation = models.OneToOneField(Annotation, on_delete=models.CASCADE, related_name="review")
    version = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=10, choices=ReviewState.choices)
    reason = models.CharField(max_length=limits.REVIEW_REASON_MAX_LENGTH, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews_made")
    reviewed_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=ReviewState.values), name="review_state_valid"),
            models.CheckConstraint(
                condition=~models.Q(state=ReviewState.REJECTED) | ~models.Q(reason=""),
                name="review_rejection_has_reason",
            ),
        ]


class ConsensusOrigin(models.TextChoices):
    CAMPAIGN = "campaign", "Mean opinion score of a campaign"
    IMPORTED = "imported", "Imported label (e.g. HumanBeauty label.jsonl)"


class Consensus(models.Model):
    """Per image and dimension: the mean opinion score after annotator screening, or an imported label."""

    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="consensus")
    dimension = models.PositiveSmallIntegerField(choices=[(d.index, d.name) for d in DIMENSIONS])
    origin = models.CharField(max_length=8, choices=ConsensusOrigin.choices)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="consensus")
    label_source = models.CharField(max_length=200, blank=True, help_text="Origin data set of an imported label.")
    method = models.CharField(
        max_length=40, default=consensus_math.METHOD,
        help_text="The campaign's consensus method that made the row (annotation.consensus.METHODS), or how an "
                  "imported label was made (e.g. imported)",
    )
    score = models.FloatField()
    count = models.PositiveIntegerField(default=1)
    std = models.FloatField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    rejected_annotators = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "consensus"
        ordering = ["image", "dimension"]
        constraints = [
            models.CheckConstraint(
                condition=score_range_q("score", nullable=False), name="consensus_score_in_unit_range"
            ),
            models.CheckConstraint(
                condition=models.Q(dimension__gte=0, dimension__lt=NUM_DIMENSIONS), name="consensus_dimension_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(origin=ConsensusOrigin.CAMPAIGN, campaign__isnull=False)
                | models.Q(origin=ConsensusOrigin.IMPORTED, campaign__isnull=True),
                name="consensus_origin_matches_campaign",
            ),
            models.CheckConstraint(
                condition=models.Q(origin=ConsensusOrigin.IMPORTED) | models.Q(method__in=ConsensusMethod.values),
                name="consensus_campaign_method_valid",
            ),
            models.UniqueConstraint(
                fields=["image", "dimension"],
                condition=models.Q(origin=ConsensusOrigin.IMPORTED),
                name="consensus_one_imported_per_image_dimension",
            ),
            models.UniqueConstraint(
                fields=["campaign", "image", "dimension"],
                condition=models.Q(origin=ConsensusOrigin.CAMPAIGN),
                name="consensus_one_per_campaign_image_dimension",
            ),
        ]


class Agreement(models.Model):
    """Inter-annotator agreement of a campaign on one dimension."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="agreement")
    dimension = models.PositiveSmallIntegerField(choices=[(d.index, d.name) for d in DIMENSIONS])
    krippendorff_alpha = models.FloatField(null=True, blank=True)
    icc = models.FloatField(null=True, blank=True)
    items = models.PositiveIntegerField(default=0)
    annotations = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["campaign", "dimension"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "dimension"], name="agreement_unique_per_campaign_dimension"),
            models.CheckConstraint(
                condition=models.Q(dimension__gte=0, dimension__lt=NUM_DIMENSIONS), name="agreement_dimension_valid"
            ),
        ]


class RaterStats(models.Model):
    """One annotator's estimates on one dimension of a campaign, as the campaign's consensus method made them at
    the last recomputation (written by consensus_update_for_campaign, read by the dashboard). NULL: not available.

    bias: how much higher (+) or lower (-) than the consensus the rater scores; inconsistency: the spread of the
    rater's scores around consensus + bias; both with 95 % intervals. modelled: the estimates are the subject
    model's (p910_mle); otherwise they are the mean and spread of the rater's deviations from the other raters.
    drift: the rater's bias per block of consecutive ratings, oldest first: [{"start", "end", "n", "bias"}, ...]."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rater_stats")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rater_stats")
    dimension = models.PositiveSmallIntegerField(choices=[(d.index, d.name) for d in DIMENSIONS])
    method = models.CharField(max_length=16, choices=ConsensusMethod.choices)
    ratings = models.PositiveIntegerField(default=0)
    bias = models.FloatField(null=True, blank=True)
    bias_ci_low = models.FloatField(null=True, blank=True)
    bias_ci_high = models.FloatField(null=True, blank=True)
    inconsistency = models.FloatField(null=True, blank=True)
    inconsistency_ci_low = models.FloatField(null=True, blank=True)
    inconsistency_ci_high = models.FloatField(null=True, blank=True)
    weight = models.FloatField(null=True, blank=True, help_text="Relative to the median rater (1).")
    modelled = models.BooleanField(default=False)
    rejected = models.BooleanField(default=False, help_text="The method left the rater's ratings out.")
    downweighted = models.BooleanField(default=False, help_text="The method counts the ratings much less.")
    drift = models.JSONField(default=list, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["campaign", "dimension", "annotator"]
        verbose_name_plural = "rater stats"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "annotator", "dimension"],
                                    name="raterstats_unique_per_campaign_annotator_dimension"),
            models.CheckConstraint(
                condition=models.Q(dimension__gte=0, dimension__lt=NUM_DIMENSIONS), name="raterstats_dimension_valid"
            ),
            models.CheckConstraint(condition=models.Q(method__in=ConsensusMethod.values),
                                   name="raterstats_method_valid"),
            models.CheckConstraint(condition=models.Q(inconsistency__isnull=True) | models.Q(inconsistency__gte=0),
                                   name="raterstats_inconsistency_non_negative"),
        ]


class CampaignSnapshot(models.Model):
    """A campaign's counts and dashboard statistics as of `computed_at`: too costly to compute per request at scale
    (a million tasks, tens of thousands of annotations), so the worker's quality update (after submits) and
    campaign_create write them; pages show them with their time ("as of"), never as live figures.

    `stats` holds the dashboard statistics (selectors.CampaignStats without its progress); NULL where only the
    counts were computed (a campaign list filling in campaigns that had none)."""

    campaign = models.OneToOneField(Campaign, primary_key=True, on_delete=models.CASCADE, related_name="snapshot")
    tasks = models.PositiveIntegerField(default=0)
    tasks_done = models.PositiveIntegerField(default=0)
    tasks_gold = models.PositiveIntegerField(default=0)
    annotations = models.PositiveIntegerField(default=0, help_text="Original annotations (corrections not counted).")
    submitted = models.PositiveIntegerField(default=0)
    leased = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    flagged = models.PositiveIntegerField(default=0)
    stats = models.JSONField(null=True, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(tasks_done__lte=models.F("tasks")),
                                   name="campaignsnapshot_done_le_tasks"),
        ]
