"""Dataset tasks: thin, idempotent wrappers around aesplatform.datasets.services.

The services are imported inside the task: this module is loaded with the Celery app, before Django's app
registry is ready.
"""

from __future__ import annotations

from aesplatform.celery import app


@app.task(name="workers.datasets.export_run", acks_late=True, reject_on_worker_lost=True)
def export_run(export_id: int) -> dict:
    """Write an export; a delivery of a finished export, or one while another worker writes it, does nothing."""
    from aesplatform.datasets.services import export_run as run

    export = run(export_id=export_id)
    return {"export_id": export_id, "state": export.state if export else "missing"}
