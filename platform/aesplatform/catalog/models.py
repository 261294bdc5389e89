"""Images and the jobs that import them.

An Image row exists only together with its stored file and thumbnail: the import service writes both files
first (content-addressed, so a retry rewrites the same names) and inserts the row last, in one transaction.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from aesplatform.common.models import CountedJob, TimeStampedModel


class ImageStatus(models.TextChoices):
    IMPORTED = "imported"
    FILTERED = "filtered"
    APPROVED = "approved"
    REJECTED = "rejected"
    IN_CAMPAIGN = "in_campaign"
    BROKEN = "broken"  # flagged by an annotator or its file went missing


class Image(TimeStampedModel):
    sha256 = models.CharField(max_length=64, unique=True)
    phash = models.CharField(max_length=16, db_index=True, help_text="64-bit perceptual hash, hex")
    near_duplicate_group = models.BigIntegerField(
        null=True, blank=True, db_index=True, help_text="Images with the same group id are near duplicates."
    )
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16, help_text="Pillow format name: JPEG, PNG, WEBP, ...")
    mode = models.CharField(max_length=16, help_text="Pillow mode of the original: RGB, CMYK, I;16, P, ...")
    file_size = models.PositiveBigIntegerField()
    original_name = models.CharField(max_length=512)
    source = models.CharField(max_length=200, db_index=True, help_text="Origin data set or collection.")
    file = models.FileField(max_length=300, upload_to="images/")
    thumbnail = models.FileField(max_length=300, upload_to="thumbs/")
    status = models.CharField(max_length=16, choices=ImageStatus.choices, default=ImageStatus.IMPORTED, db_index=True)
    import_job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="images")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(width__gt=0, height__gt=0), name="image_positive_size"),
            models.CheckConstraint(condition=models.Q(status__in=ImageStatus.values), name="image_status_valid"),
            models.CheckConstraint(condition=models.Q(sha256__regex=r"^[0-9a-f]{64}$"), name="image_sha256_hex"),
        ]
        indexes = [models.Index(fields=["status", "id"], name="image_status_id")]

    def __str__(self) -> str:
        return f"Image {self.pk} ({self.original_name})"


class ImportKind(models.TextChoices):
    UPLOAD = "upload", "Browser/API upload"
    FOLDER = "folder", "Server-side folder"
    ZIP = "zip", "Zip file"
    HUMANBEAUTY = "humanbeauty", "HumanBeauty data set folder"


class ImportJob(CountedJob):
    kind = models.CharField(max_length=16, choices=ImportKind.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="import_jobs")
    source_path = models.CharField(max_length=1024, blank=True, help_text="Folder or zip on the server.")
    source_name = models.CharField(max_length=200, help_text="Recorded as Image.source for what this job imports.")
    imported_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    labels_count = models.PositiveIntegerField(default=0, help_text="HumanBeauty labels stored as consensus.")

    job_task = "aesplatform.catalog.tasks.import_job_run"

    class Meta(CountedJob.Meta):
        ordering = ["-id"]
        constraints = [
            *CountedJob.Meta.constraints,
            models.CheckConstraint(condition=models.Q(kind__in=ImportKind.values), name="importjob_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"ImportJob {self.pk} ({self.kind}, {self.state})"

    @property
    def imported_nothing(self) -> bool:
        """Finished without error yet brought in no image (every file a duplicate or refused): a warning, not a
        success."""
        return self.state == "succeeded" and self.imported_count == 0


class ImportOutcome(models.TextChoices):
    PENDING = "pending"
    IMPORTED = "imported"
    DUPLICATE = "duplicate"
    ERROR = "error"


class ImportItem(models.Model):
    """One file of an import job and what became of it: the job's report, and what makes a re-run resumable."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=1024, help_text="Path inside the upload, folder or zip.")
    staged_file = models.CharField(max_length=300, blank=True,
                                   help_text="Storage key of an uploaded file until processed.")
    outcome = models.CharField(max_length=16, choices=ImportOutcome.choices, default=ImportOutcome.PENDING)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.PROTECT, related_name="import_items")
    message = models.TextField(blank=True)
    label = models.JSONField(null=True, blank=True, help_text="The label.jsonl record of a HumanBeauty import.")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="importitem_unique_name_per_job"),
            models.CheckConstraint(
                condition=models.Q(outcome__in=ImportOutcome.values), name="importitem_outcome_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(outcome=ImportOutcome.IMPORTED) | models.Q(image__isnull=False),
                name="importitem_imported_has_image",
            ),
        ]
        indexes = [models.Index(fields=["job", "outcome"], name="importitem_job_outcome")]
