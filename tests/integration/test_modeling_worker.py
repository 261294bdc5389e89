"""A real Celery worker (real Redis, the test PostgreSQL) on the `gpu` queue runs a training job; killed mid-run
(kill -9), the redelivered task resumes from the last checkpoint; a cancel stops it at its next step."""

from __future__ import annotations

from pathlib import Path

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


def _training_processes(job) -> list[int]:
    """Pids of the processes (torchrun's agent and the ranks) training this job: their command line names its
    config file."""
    marker = str(Path(job.output_dir) / "run" / "launch" / "config.json").encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_worker_not_its_children(worker: CeleryWorker) -> None:
    """kill -9 the worker's main and pool processes only (CeleryWorker.kill would also kill what they started)."""
    import psutil

    parent = psutil.Process(worker.process.pid)
    for child in parent.children():
        child.kill()
    parent.kill()
    worker.process.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_a_two_process_training_job_from_the_api_trains_and_registers_a_model(celery_worker_factory, curator_client,
                                                                             curator_user, settings):
    settings.AESP_TRAINING_MAX_PROCESSES = 2  # checked when the job is created (here), not by the worker
    worker = celery_worker_factory(queues="gpu")
    version = frozen_version(synthetic_images(24), user=curator_user)
    response = curator_client.post("/api/training-jobs/", {
        "dataset_version": version.pk, "preset": "tiny-cpu",
        "config": {"processes": 2, "max_steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 1,
                   "metavoter_steps": 10}}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["config"]["processes"] == 2
    job_id = response.json()["id"]
    job = wait_for(lambda: TrainingJob.objects.filter(pk=job_id, state__in=[JobState.SUCCEEDED, JobState.FAILED])
                   .first(), timeout=240, message=f"the job to finish; worker log:\n{worker.logs()[-3000:]}")
    assert job.state == JobState.SUCCEEDED, job.log[-3000:]
    assert "training in 2 processes" in job.log and job.step == job.total_steps == 4
    assert [p[0] for p in job.loss_curve] == [1, 2, 3, 4]  # rank 0's reports, relayed once each
    assert job.model_version.checkpoint_path and job.metrics[-1]["holdout"]["n"] > 0
    body = curator_client.get(f"/api/training-jobs/{job_id}/").json()
    assert body["state"] == "succeeded" and body["model_version"] == job.model_version.pk
    log = (Path(job.output_dir) / "run" / "launch" / "train.log").read_text()
    assert "[rank1]" in log or "nproc_per_node=2" in log


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_takes_its_training_processes_along_and_the_job_resumes(celery_worker_factory, curator_user,
                                                                               settings):
    settings.AESP_TRAINING_MAX_PROCESSES = 2
    first = celery_worker_factory(queues="gpu", **LIFE_CYCLE)
    version = frozen_version(synthetic_images(24), user=curator_user)
    job = services.training_job_create(
        dataset_version=version, preset="tiny-cpu", created_by=curator_user,
        config={"processes": 2, "max_steps": 400, "batch_size": 8, "checkpoint_every": 3, "log_every": 1,
                "metavoter_steps": 10})
    step = lambda: TrainingJob.objects.get(pk=job.pk).step  # noqa: E731
    wait_for(lambda: step() >= 4, timeout=240, message=f"4 training steps; worker log:\n{first.logs()[-3000:]}")
    job.refresh_from_db()
    assert len(_training_processes(job)) == 3  # torchrun's agent and two ranks
    _kill_worker_not_its_children(first)
    killed_at = step()
    # the parent-death signals: nothing trains on behind the dead worker's back
    wait_for(lambda: not _training_processes(job), timeout=30, message="the training processes to end")
    checkpoint_at_kill = services.latest_checkpoint_step(job)  # the ranks may be a step ahead of the job's row

    second = CeleryWorker(first.env, "cpu,gpu", beat=True)
    try:
        second.start()
        wait_for(lambda: "resuming after an interrupted run" in TrainingJob.objects.get(pk=job.pk).log,
                 timeout=120, message=f"the redelivered task to resume; worker log:\n{second.logs()[-3000:]}")
        wait_for(lambda: step() > max(killed_at, checkpoint_at_kill) + 1, timeout=180,
                 message="training to go on after the resume")
        services.training_job_cancel(job=job)
        wait_for(lambda: TrainingJob.objects.get(pk=job.pk).state == JobState.CANCELLED, timeout=90,
                 message="the cancel to stop the run")
    finally:
        second.stop()
    job.refresh_from_db()
    assert "cancelled: stopped at step" in job.log and not hasattr(job, "model_version")
    resumed_at = int(job.log.split("continuing from the checkpoint of step ")[1].split()[0].rstrip(")"))
    assert resumed_at == checkpoint_at_kill and resumed_at >= 3 and resumed_at % 3 == 0
    stopped_at = int(job.log.split("cancelled: stopped at step ")[1].split()[0])
    assert services.latest_checkpoint_step(job) == stopped_at  # the stop wrote its checkpoint (once: rank 0)
    assert not _training_processes(job)
