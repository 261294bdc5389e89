"""Data steps shared by the migrations that moved the five job kinds onto the common Job model (issue 15)."""

from __future__ import annotations

from django.db import migrations, models
from django.db.models import F


def job_lifecycle_backfill(app_label: str, model_name: str):
    """A RunPython function filling the new life-cycle fields of existing rows from what they already say:
    a job that ever ran has started (at its creation, the earliest time we know) and was claimed once; an active
    one's last sign of life is its last update (a job left running by a worker that is gone is then seen as
    stalled and re-queued by the sweep); a finished one without an end time ended at its last update."""

    def backfill(apps, schema_editor) -> None:
        model = apps.get_model(app_label, model_name)
        rows = model.objects.using(schema_editor.connection.alias)
        rows.exclude(state="pending").filter(started_at__isnull=True).update(started_at=F("created_at"))
        rows.exclude(state="pending").filter(attempts=0).update(attempts=1)
        rows.filter(state__in=["pending", "running"]).update(heartbeat_at=F("updated_at"))
        rows.filter(state__in=["succeeded", "failed", "cancelled"], finished_at__isnull=True).update(
            finished_at=F("updated_at"))

    return backfill


# The common Job fields a job kind may have lacked before it moved onto the Job model, as that model declares them.
_JOB_FIELDS = {
    "attempts": lambda: models.PositiveIntegerField(default=0, help_text="How many times a worker claimed the job."),
    "cancel_requested": lambda: models.BooleanField(default=False),
    "heartbeat_at": lambda: models.DateTimeField(blank=True, help_text="Last sign of life of the job's worker.",
                                                 null=True),
    "started_at": lambda: models.DateTimeField(blank=True, null=True),
}


def job_lifecycle_operations(app_label: str, model_name: str, *, added: tuple[str, ...]) -> list:
    """The steps that moved one job kind onto the common Job model: the common fields it lacked (`added`), the common
    help text of `error`, then the backfill above. One definition for the five kinds' migrations."""
    name = model_name.lower()
    return [
        *(migrations.AddField(model_name=name, name=field, field=_JOB_FIELDS[field]()) for field in added),
        migrations.AlterField(model_name=name, name="error", field=models.TextField(
            blank=True, help_text="Why the job failed (or why it was last interrupted).")),
        migrations.RunPython(job_lifecycle_backfill(app_label, model_name), migrations.RunPython.noop),
    ]
