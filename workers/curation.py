"""Celery tasks of curation. `workers.gpu.*` names are routed to the `gpu` queue (aesplatform.celery)."""

from __future__ import annotations

import multiprocessing

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded


@shared_task(name="workers.gpu.filter_run_execute", bind=True, acks_late=True, reject_on_worker_lost=True)
def filter_run_execute(self, run_id: int) -> dict:
    """Score what is left of a filter run, then propose and batch. Safe to deliver twice or after a kill."""
    from aesplatform.curation import services

    # Celery's prefork children are daemonic, and multiprocessing refuses children of daemons; the DataLoader
    # needs its decode workers. They are daemonic themselves and exit with this process, so lifting it is safe.
    multiprocessing.current_process()._config.pop("daemon", None)
    try:
        run = services.filter_run_execute(run_id=run_id)
    except SoftTimeLimitExceeded:
        # Everything committed so far stays; the next delivery continues from the first unscored image.
        self.apply_async(args=[run_id], countdown=1)
        return {"run": run_id, "state": "requeued"}
    return {"run": run_id, "state": run.state if run else "missing"}
