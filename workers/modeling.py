"""Modeling tasks (training, pre-scoring): `workers.gpu.*` names go to the `gpu` queue, `workers.humanaesexpert.*`
to the `humanaesexpert` queue (aesplatform.celery), whose worker runs with the pinned runtime of the released
HumanAesExpert checkpoints first on its PYTHONPATH (`make humanaesexpert-runtime`).

Thin and idempotent: ids in, services called. A job whose worker was killed is queued again by the job sweep
(aesplatform.common.jobs), and the services resume (training from the newest checkpoint, pre-scoring from the
first image without a score).
"""

from __future__ import annotations

import multiprocessing

from celery import shared_task


def _allow_children() -> None:
    # Celery's prefork children are daemonic and multiprocessing refuses children of daemons; DataLoader decode
    # workers (num_workers > 0 on a GPU machine) need them. They exit with this process.
    multiprocessing.current_process()._config.pop("daemon", None)


@shared_task(name="workers.gpu.training_job_run", acks_late=True, reject_on_worker_lost=True)
def training_job_run(job_id: int) -> dict:
    from aesplatform.modeling import services

    _allow_children()
    job = services.training_job_run(job_id=job_id)
    return {"job": job_id, "state": job.state if job else "busy"}


@shared_task(name="workers.gpu.prescore_run_execute", acks_late=True, reject_on_worker_lost=True)
def prescore_run_execute(run_id: int) -> dict:
    from aesplatform.modeling import services

    _allow_children()
    run = services.prescore_run_execute(run_id=run_id)
    return {"run": run_id, "state": run.state if run else "busy"}


@shared_task(name="workers.humanaesexpert.prescore_run_execute", acks_late=True, reject_on_worker_lost=True)
def humanaesexpert_prescore_run_execute(run_id: int) -> dict:
    """The same pre-scoring run, for a released HumanAesExpert checkpoint (remote code, transformers 4.44.2)."""
    from aesplatform.modeling import services

    run = services.prescore_run_execute(run_id=run_id)
    return {"run": run_id, "state": run.state if run else "busy"}
