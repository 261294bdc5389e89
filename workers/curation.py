"""Celery tasks of curation. `workers.gpu.*` names are routed to the `gpu` queue (aesplatform.celery)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded


def _allow_decode_workers() -> None:
    """Let the DataLoader start its decode workers from inside a Celery prefork (billiard) child.

    Such a child is daemonic, and multiprocessing refuses children of daemons; its authkey is billiard's, which
    refuses to be pickled for the forkserver. The decode workers are daemonic themselves and end with this
    process, so both are safe to lift. (A `--pool solo` GPU worker needs none of this.)
    """
    process = multiprocessing.current_process()
    process._config.pop("daemon", None)
    if not isinstance(process._config.get("authkey"), multiprocessing.process.AuthenticationString):
        process._config["authkey"] = multiprocessing.process.AuthenticationString(os.urandom(32))


@shared_task(name="workers.gpu.filter_run_execute", bind=True, acks_late=True, reject_on_worker_lost=True)
def filter_run_execute(self, run_id: int) -> dict:
    """Score what is left of a filter run, then propose and batch. Safe to deliver twice or after a kill."""
    from aesplatform.curation import services

    _allow_decode_workers()
    try:
        run = services.filter_run_execute(run_id=run_id)
    except SoftTimeLimitExceeded:
        # Everything committed so far stays; the next delivery continues from the first unscored image.
        self.apply_async(args=[run_id], countdown=1)
        return {"run": run_id, "state": "requeued"}
    return {"run": run_id, "state": run.state if run else "missing"}
