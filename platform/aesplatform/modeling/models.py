"""Training jobs, the model registry (exactly one promoted model) and pre-scores."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from aesplatform.common.models import (
    DIMENSION_FIELDS,
    CountedJob,
    DimensionScores,
    Job,
    TimeStampedModel,
    WorkChunk,
    score_range_constraints,
    score_range_q,
)


class TrainingJob(Job):
    dataset_version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.PROTECT,
                                        related_name="training_jobs")
    preset = models.CharField(max_length=40, help_text="tiny-cpu, 1B-LoRA, 8B-LoRA, ...")
    config = models.JSONField(default=dict, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=list, blank=True, help_text="One entry per evaluation (epoch).")
    loss_curve = models.JSONField(default=list, blank=True, help_text="[step, loss] pairs.")
    log = models.TextField(blank=True)
    output_dir = models.CharField(max_length=1024, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_jobs")

    job_task = "aesplatform.modeling.tasks.training_job_run"

    class Meta(Job.Meta):
        ordering = ["-id"]
        constraints = [
            *Job.Meta.constraints,
            models.CheckConstraint(
                condition=models.Q(total_steps=0) | models.Q(step__lte=models.F("total_steps")),
                name="trainingjob_step_le_total",
            ),
        ]


class ModelBackend(models.TextChoices):
    MODEL_CORE = "model_core", "Bundled model_core checkpoint"
    HUMANAESEXPERT = "humanaesexpert", "Released HumanAesExpert checkpoint (remote code)"


class ModelVersion(TimeStampedModel):
    name = models.CharField(max_length=200, unique=True)
    backend = models.CharField(max_length=16, choices=ModelBackend.choices, default=ModelBackend.MODEL_CORE)
    training_job = models.OneToOneField(
        TrainingJob, null=True, blank=True, on_delete=models.PROTECT, related_name="model_version"
    )
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions"
    )
    checkpoint_path = models.CharField(max_length=1024)
    checkpoint_key = models.CharField(
        max_length=1024, blank=True,
        help_text="Where a trained checkpoint is on the object store (a prefix: its files and "
                  "tree-manifest.json); workers load it from their cache. Empty: only checkpoint_path.")
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Evaluation report, per head and dimension.")
    report_dir = models.CharField(max_length=1024, blank=True, help_text="Where the evaluation plots are.")
    promoted = models.BooleanField(default=False)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="promoted_models"
    )
    # the pre-score histograms of the Pre-scores page, as of `prescore_histograms_at`: stored when a pre-scoring run
    # of this model ends (reading a million pre-scores per page view does not scale); NULL until then
    prescore_histograms = models.JSONField(null=True, blank=True)
    prescore_histograms_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["promoted"], condition=models.Q(promoted=True), name="modelversion_one_promoted"
            ),
            models.CheckConstraint(
                condition=models.Q(backend__in=ModelBackend.values), name="modelversion_backend_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PrescoreRun(CountedJob):
    """A resumable pass of one model over chosen images."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="prescore_runs")
    image_ids = models.JSONField(default=list, blank=True, help_text="The chosen images; empty: all approved images.")
    max_tiles = models.PositiveSmallIntegerField(default=1)
    batch_size = models.PositiveIntegerField(default=32)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="prescore_runs")

    class Meta(CountedJob.Meta):
        ordering = ["-id"]
        constraints = [
            *CountedJob.Meta.constraints,
        ]

    def job_task_name(self) -> str:
        """Released HumanAesExpert checkpoints are scored on their own queue (their pinned runtime)."""
        if self.model_version.backend == ModelBackend.HUMANAESEXPERT:
            return "aesplatform.modeling.tasks.humanaesexpert_prescore_run_execute"
        return "aesplatform.modeling.tasks.prescore_run_execute"

    def assist_task_name(self) -> str:
        """The task of another worker scoring chunks of the run (aesplatform.common.chunks), on the run's queue."""
        if self.model_version.backend == ModelBackend.HUMANAESEXPERT:
            return "aesplatform.modeling.tasks.humanaesexpert_prescore_run_assist"
        return "aesplatform.modeling.tasks.prescore_run_assist"


class PrescoreRunChunk(WorkChunk):
    """A range of image ids of a pre-scoring run that one worker scores (aesplatform.common.chunks)."""

    run = models.ForeignKey(PrescoreRun, on_delete=models.CASCADE, related_name="chunks")

    class Meta(WorkChunk.Meta):
        ordering = ["run", "index"]
        constraints = [
            *WorkChunk.Meta.constraints,
            models.UniqueConstraint(fields=["run", "index"], name="prescorerunchunk_unique_index_per_run"),
        ]


class Prescore(DimensionScores):
    """One model's scores of one image: the three heads, the 12 expert scores (the mixin's columns), MetaVoter.

    NULL is what the model does not give (a released HumanAesExpert checkpoint gives the MetaVoter and the 12
    expert scores only); nothing is filled in."""

    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="prescores")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="prescores")
    lm_score = models.FloatField(null=True, blank=True, help_text="The LM head's score; null: not given by the model.")
    regression_score = models.FloatField(null=True, blank=True,
                                         help_text="The regression head's score; null: not given by the model.")
    metavoter_score = models.FloatField(db_index=True)
    uncertainty = models.FloatField(
        null=True, blank=True, help_text="Spread of the LM head's level distribution; null: not given by the model."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="prescore_unique_image_per_model"),
            *score_range_constraints(DIMENSION_FIELDS, prefix="prescore", nullable=True),
            *[
                models.CheckConstraint(condition=score_range_q(field, nullable=field != "metavoter_score"),
                                       name=f"prescore_{field}_in_unit_range")
                for field in ("lm_score", "regression_score", "metavoter_score")
            ],
            models.CheckConstraint(condition=models.Q(uncertainty__isnull=True) | models.Q(uncertainty__gte=0),
                                   name="prescore_uncertainty_not_negative"),
        ]
        indexes = [
            # the Pre-scores page's and API's default order (selectors.prescore_list): the first rows of a model's
            # million pre-scores read from the index, not sorted per request (metavoter_score is never NULL, so no
            # NULLS LAST: SQLite, the embedded default, has none in an index)
            models.Index(models.F("model_version"), models.F("metavoter_score").desc(), models.F("id"),
                         name="prescore_by_metavoter"),
        ]
