"""Semi-automatic filtering: a FilterRun scores images, proposals are grouped in ReviewBatches, curators decide."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from aesplatform.common.models import CountedJob, TimeStampedModel, WorkChunk


class FilterRun(CountedJob):
    name = models.CharField(max_length=200)
    clip_model_name = models.CharField(max_length=100, default="ViT-L-14")
    clip_checkpoint = models.CharField(max_length=1024, blank=True,
                                       help_text="Local checkpoint path; empty: random init (tests).")
    prompt_set = models.JSONField(default=dict, help_text="Versioned, editable zero-shot prompt set.")
    thresholds = models.JSONField(default=dict, help_text="Per-signal thresholds that turn signals into proposals.")
    random_weights = models.BooleanField(
        default=False, help_text="Scored without a checkpoint: CLIP signals are noise, so they neither reject an "
        "image nor group near duplicates; the run and its batches say so.")
    seconds_per_image = models.FloatField(
        null=True, blank=True, help_text="Measured scoring time per image (wall clock of the worker, this run); "
        "new runs with the same model estimate their duration from it.")
    batch_size = models.PositiveIntegerField(default=64)
    review_batch_size = models.PositiveIntegerField(default=48)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="filter_runs")
    # selectors.filter_run_counts of a finished run, kept exact by the writes that change them (proposals: _propose,
    # in the same transaction; decisions: review_batch_decide adds its batch's) instead of counting up to a million
    # results per page view; NULL while scoring (counted live then) and for runs finished before it was kept
    result_counts = models.JSONField(null=True, blank=True)

    job_task = "aesplatform.curation.tasks.filter_run_execute"
    assist_task = "aesplatform.curation.tasks.filter_run_assist"  # another worker scoring chunks of the run

    class Meta(CountedJob.Meta):
        ordering = ["-id"]
        constraints = [
            *CountedJob.Meta.constraints,
            models.CheckConstraint(
                condition=models.Q(batch_size__gt=0, review_batch_size__gt=0), name="filterrun_batch_sizes_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"FilterRun {self.pk} {self.name}"


class FilterRunChunk(WorkChunk):
    """A range of a run's FilterResult ids that one worker scores (aesplatform.common.chunks)."""

    run = models.ForeignKey(FilterRun, on_delete=models.CASCADE, related_name="chunks")

    class Meta(WorkChunk.Meta):
        ordering = ["run", "index"]
        constraints = [
            *WorkChunk.Meta.constraints,
            models.UniqueConstraint(fields=["run", "index"], name="filterrunchunk_unique_index_per_run"),
        ]


class ProposedDecision(models.TextChoices):
    KEEP = "keep"
    REJECT = "reject"


class FilterResult(models.Model):
    """Signals of one image in one run. Created pending when the run starts; `scored_at` set once scored."""

    run = models.ForeignKey(FilterRun, on_delete=models.CASCADE, related_name="results")
    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="filter_results")
    scored_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the image could not be scored (e.g. its file disappeared).")
    clip_probabilities = models.JSONField(default=dict, blank=True, help_text="prompt group -> probability")
    embedding = models.BinaryField(null=True, blank=True,
                                   help_text="L2-normalised CLIP image embedding, float16 bytes.")
    face_count = models.PositiveIntegerField(null=True, blank=True)
    largest_face_fraction = models.FloatField(null=True, blank=True, help_text="Largest face area / image area.")
    blur_variance = models.FloatField(null=True, blank=True, help_text="Variance of the Laplacian (low = blurry).")
    exposure = models.JSONField(default=dict, blank=True, help_text="Fractions of under- and over-exposed pixels.")
    pixel_digest = models.CharField(
        max_length=32, blank=True, default="",
        help_text="Digest of the decoded pixels: equal for pixel-identical images.",
    )
    is_exact_duplicate = models.BooleanField(default=False)
    near_duplicate_of = models.ForeignKey(
        "catalog.Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="near_duplicate_results"
    )
    proposed_decision = models.CharField(max_length=8, choices=ProposedDecision.choices, blank=True)
    reasons = models.JSONField(default=list, blank=True, help_text="Why the proposal is what it is.")
    uncertainty = models.FloatField(null=True, blank=True, help_text="How close the signals are to the thresholds.")
    batch = models.ForeignKey("ReviewBatch", null=True, blank=True, on_delete=models.SET_NULL, related_name="results")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "image"], name="filterresult_unique_image_per_run"),
            models.CheckConstraint(
                condition=models.Q(proposed_decision__in=["", *ProposedDecision.values]),
                name="filterresult_decision_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(uncertainty__isnull=True) | models.Q(uncertainty__gte=0, uncertainty__lte=1),
                name="filterresult_uncertainty_unit_range",
            ),
        ]
        indexes = [
            # "what is left to score" for a resumed run
            models.Index(
                fields=["run", "id"], condition=models.Q(scored_at__isnull=True), name="filterresult_unscored"
            ),
            # the run page's list of unreadable images (few), without reading every result of the run
            models.Index(fields=["run", "id"], condition=~models.Q(error=""), name="filterresult_errors"),
            models.Index(fields=["batch", "uncertainty"], name="filterresult_batch_uncertainty"),
        ]


class BatchState(models.TextChoices):
    PENDING = "pending"
    DECIDED = "decided"


class ReviewBatch(TimeStampedModel):
    run = models.ForeignKey(FilterRun, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=BatchState.choices, default=BatchState.PENDING, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="decided_batches"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="reviewbatch_unique_number_per_run"),
            models.CheckConstraint(
                condition=models.Q(state=BatchState.PENDING, decided_at__isnull=True)
                | models.Q(state=BatchState.DECIDED, decided_at__isnull=False, decided_by__isnull=False),
                name="reviewbatch_decided_has_who_and_when",
            ),
        ]


class CuratorDecision(models.Model):
    """The audit trail: who decided what about which image, when, and whether it overrode the proposal."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    batch = models.ForeignKey(ReviewBatch, on_delete=models.CASCADE, related_name="decisions")
    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="curator_decisions")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    overrode_proposal = models.BooleanField(default=False)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="curator_decisions")
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "image"], name="curatordecision_unique_image_per_batch"),
            models.CheckConstraint(
                condition=models.Q(decision__in=["approve", "reject"]), name="curatordecision_valid"
            ),
        ]


class EmbeddingMap(models.Model):
    """A filter run's CLIP image embeddings projected to 2-D (curation/projection.py), computed once by a task.

    `points` is [[image_id, x, y], ...] with x, y in [0, 1]: what the map page draws, read in one row."""

    run = models.OneToOneField(FilterRun, on_delete=models.CASCADE, related_name="embedding_map")
    method = models.CharField(max_length=16, help_text="pca+tsne or pca (curation/projection.py)")
    point_count = models.PositiveIntegerField()
    points = models.JSONField(default=list, help_text="[[image_id, x, y], ...], x and y in [0, 1].")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-run_id"]


class ImageSelection(models.Model):
    """A saved set of images (a lasso on the embedding map), shown by the gallery as ?selection=<id>. Its images are
    rows of ImageSelectionItem (the gallery filters with an indexed EXISTS, whatever the size). Bounded:
    limits.SELECTION_MAX_IMAGES images at most."""

    size = models.PositiveIntegerField()
    note = models.CharField(max_length=200, blank=True, help_text="Where the selection came from.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="image_selections")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=models.Q(size__gt=0), name="imageselection_not_empty")]


class ImageSelectionItem(models.Model):
    selection = models.ForeignKey(ImageSelection, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["selection", "image"], name="imageselectionitem_unique_image"),
        ]
