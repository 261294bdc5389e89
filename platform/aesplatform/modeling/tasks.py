"""Modeling tasks (training, pre-scoring) on the `gpu` queue; pre-scoring with a released HumanAesExpert checkpoint
on the `humanaesexpert` queue, whose worker runs with the pinned runtime of those checkpoints first on its
PYTHONPATH (`make humanaesexpert-runtime`). The job's model names the task (TrainingJob, PrescoreRun.job_task_name).

Thin and idempotent: ids in, services called. A job whose worker was killed is queued again by the job sweep
(aesplatform.common.jobs), and the services resume (training from the newest checkpoint, pre-scoring from the
first image without a score).
"""

from __future__ import annotations

from celery import current_task, shared_task

from aesplatform.common.jobqueue import task_former_names
from aesplatform.common.objectstore import StorageUnavailable, storage_retry_delay
from aesplatform.common.processes import children_allowed

from . import services


@shared_task(name="aesplatform.modeling.tasks.training_job_run", queue="gpu")
def training_job_run(job_id: int) -> dict:
    with children_allowed():  # the DataLoader's decode workers
        job = services.training_job_run(job_id=job_id)
    return {"job": job_id, "state": job.state if job else "busy"}


def _prescore(task, run_id: int) -> dict:
    """Run the pre-scoring service; a run that the object store stopped is queued again after a delay (the
    service put it back to pending), until the retries are spent (then the service fails it). `task`: the task
    object (not bound: a former name registers the same function, see task_former_names)."""
    delay = storage_retry_delay(task.request.retries)
    try:
        run = services.prescore_run_execute(run_id=run_id, storage_retry_s=delay, worker=_node())
    except StorageUnavailable as exc:
        raise task.retry(exc=exc, countdown=delay, max_retries=task.request.retries + 1) from None
    return {"run": run_id, "state": run.state if run else "busy"}


@shared_task(name="aesplatform.modeling.tasks.prescore_run_execute", queue="gpu")
def prescore_run_execute(run_id: int) -> dict:
    with children_allowed():  # the DataLoader's decode workers
        return _prescore(prescore_run_execute, run_id)


@shared_task(name="aesplatform.modeling.tasks.prescore_run_assist", queue="gpu", ignore_result=True)
def prescore_run_assist(run_id: int) -> dict:
    """Score chunks of a pre-scoring run another worker holds, until none is free (ends at once when none is)."""
    with children_allowed():  # the DataLoader's decode workers
        return services.prescore_run_assist(run_id=run_id, worker=_node())


@shared_task(name="aesplatform.modeling.tasks.humanaesexpert_prescore_run_execute", queue="humanaesexpert")
def humanaesexpert_prescore_run_execute(run_id: int) -> dict:
    """The same pre-scoring run, for a released HumanAesExpert checkpoint (remote code, transformers 4.44.2)."""
    return _prescore(humanaesexpert_prescore_run_execute, run_id)


@shared_task(name="aesplatform.modeling.tasks.humanaesexpert_prescore_run_assist", queue="humanaesexpert",
             ignore_result=True)
def humanaesexpert_prescore_run_assist(run_id: int) -> dict:
    return services.prescore_run_assist(run_id=run_id, worker=_node())


def _node() -> str:
    """The Celery node name of this worker ("gpu@host"): who scored which chunk."""
    return (getattr(current_task.request, "hostname", None) if current_task else None) or ""


task_former_names(training_job_run, "workers.gpu.training_job_run")
task_former_names(prescore_run_execute, "workers.gpu.prescore_run_execute")
task_former_names(humanaesexpert_prescore_run_execute, "workers.humanaesexpert.prescore_run_execute")
