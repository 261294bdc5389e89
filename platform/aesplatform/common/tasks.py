"""The job sweep (aesplatform.common.jobs.job_sweep), queued by celery beat every AESP_JOB_SWEEP_S
(aesplatform.celery): re-queues the jobs whose worker died or whose message was lost, so that nothing stays stuck."""

from __future__ import annotations

from celery import shared_task

from . import jobs
from .jobqueue import task_former_names


@shared_task(name="aesplatform.common.tasks.job_sweep", queue="cpu", ignore_result=True)
def job_sweep() -> dict:
    return jobs.job_sweep()


task_former_names(job_sweep, "workers.jobs.job_sweep")
