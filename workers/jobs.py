"""The job sweep (aesplatform.common.jobs.job_sweep), run by celery beat every AESP_JOB_SWEEP_S (aesplatform.celery):
re-queues the jobs whose worker died or whose message was lost, so that nothing stays stuck."""

from __future__ import annotations

from aesplatform.celery import app


@app.task(name="workers.jobs.job_sweep", ignore_result=True)
def job_sweep() -> dict:
    from aesplatform.common.jobs import job_sweep as sweep

    return sweep()
