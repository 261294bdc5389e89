"""A real Celery worker (real Redis, the test PostgreSQL) on the `gpu` queue runs a training job; killed mid-run
(kill -9), the redelivered task resumes from the last checkpoint; a cancel stops it at its next step."""

from __future__ import annotations

import pytest

from aesplatform.common.models import JobState
from aesplatform.modeling import services
from aesplatform.modeling.models import TrainingJob
from tests.conftest import CeleryWorker, wait_for
from tests.support.faults import LIFE_CYCLE
from tests.support.modeling import frozen_version, synthetic_images

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


def test_modeling_tasks_are_routed_to_the_gpu_queue():
    from aesplatform.celery import app
    from aesplatform.modeling.tasks import prescore_run_execute, training_job_run

    for task in (training_job_run, prescore_run_execute):
        assert app.amqp.router.route({}, task.name)["queue"].name == "gpu"


@pytest.mark.django_db(transaction=True)
def test_killed_training_worker_resumes_from_its_checkpoint_then_cancels(celery_worker_factory, curator_user,
                                                                          settings, tmp_path):
    first = celery_worker_factory(queues="gpu", **LIFE_CYCLE)
    version = frozen_version(synthetic_images(24), user=curator_user)
    job = services.training_job_create(
        dataset_version=version, preset="tiny-cpu", created_by=curator_user,
        config={"max_steps": 400, "batch_size": 8, "checkpoint_every": 3, "log_every": 1, "metavoter_steps": 10})
    step = lambda: TrainingJob.objects.get(pk=job.pk).step  # noqa: E731
    wait_for(lambda: step() >= 7, timeout=180, message=f"7 training steps; worker log:\n{first.logs()[-3000:]}")
    first.kill()
    killed_at = step()
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.total_steps == 400 and job.eta_seconds > 0

    # nobody resumes it: the job sweep of the new worker's embedded beat takes it up (production visibility timeout)
    second = CeleryWorker(first.env, "cpu,gpu", beat=True)
    try:
        second.start()
        wait_for(lambda: "resuming after an interrupted run" in TrainingJob.objects.get(pk=job.pk).log,
                 timeout=120, message=f"the redelivered task to resume; worker log:\n{second.logs()[-3000:]}")
        wait_for(lambda: step() > killed_at + 2, timeout=120, message="training to go on after the resume")
        services.training_job_cancel(job=job)
        wait_for(lambda: TrainingJob.objects.get(pk=job.pk).state == JobState.CANCELLED, timeout=60,
                 message="the cancel to stop the run")
    finally:
        second.stop()
    job.refresh_from_db()
    curve_steps = [p[0] for p in job.loss_curve]
    # resumed from the last checkpoint (a multiple of 3 at or below the step the kill interrupted), not from 0
    assert curve_steps == sorted(set(curve_steps)) and curve_steps[0] == 1 and curve_steps[-1] == job.step
    assert "cancelled: stopped at step" in job.log and not hasattr(job, "model_version")
    assert job.step > killed_at
    resumed_at = int(job.log.split("continuing from the checkpoint of step ")[1].split()[0].rstrip(")"))
    assert 6 <= resumed_at <= killed_at and resumed_at % 3 == 0
