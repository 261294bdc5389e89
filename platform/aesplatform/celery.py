"""The Celery app. Tasks live in the top-level `workers` package and stay thin (ids in, services called).

Queues: `cpu` (imports, exports, bookkeeping), `gpu` (CLIP filtering, training, pre-scoring) and
`humanaesexpert` (pre-scoring with a released HumanAesExpert checkpoint: its worker runs the runtime that release
was made for, transformers 4.44.2 and friends first on its PYTHONPATH, `make humanaesexpert-runtime`). JSON only,
late acks with reject-on-worker-lost so that a killed worker's task is delivered again; every task is
idempotent, which makes that safe.

Nothing stays stuck: celery beat (`make run` embeds it in the main worker, compose runs a `beat` service) queues
`workers.jobs.job_sweep` every AESP_JOB_SWEEP_S; it re-queues the jobs with no heartbeat for AESP_JOB_STALE_S
(aesplatform.common.jobs). The broker's visibility timeout stays long (an hour): a job whose worker died is taken
up by the sweep within a minute or two, on either broker, not by a redelivery.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aesplatform.settings")

app = Celery("aesplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    result_extended=True,
    result_expires=7 * 24 * 3600,
    task_default_queue="cpu",
    task_queues=(Queue("cpu"), Queue("gpu"), Queue("humanaesexpert")),
    task_routes={"workers.gpu.*": {"queue": "gpu"}, "workers.humanaesexpert.*": {"queue": "humanaesexpert"}},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.on_after_configure.connect
def _job_sweep_schedule(sender: Celery, **kwargs) -> None:
    """The sweep every AESP_JOB_SWEEP_S, read once the configuration is loaded (importing this module reads no
    settings: the curation engine, for one, imports it without Django)."""
    from django.conf import settings

    period = float(settings.AESP_JOB_SWEEP_S)
    # a sweep that waited longer than one period is superseded by the next one
    sender.add_periodic_task(period, sender.signature("workers.jobs.job_sweep"), name="job-sweep", queue="cpu",
                             expires=period)


app.autodiscover_tasks(["workers"], related_name=None, force=True)
