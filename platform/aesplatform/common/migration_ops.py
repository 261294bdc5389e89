"""Data steps shared by the migrations that moved the five job kinds onto the common Job model (issue 15)."""

from __future__ import annotations

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
