"""The Celery app. Tasks live beside their apps (`aesplatform/<app>/tasks.py`, found by `autodiscover_tasks`), each
declared `shared_task(name=<its module path>, queue=...)`, thin (ids in, services called).

Queues: `cpu` (imports, exports, bookkeeping), `gpu` (CLIP filtering, training, pre-scoring) and
`humanaesexpert` (pre-scoring with a released HumanAesExpert checkpoint: its worker runs the runtime that release
was made for, transformers 4.44.2 and friends first on its PYTHONPATH, `make humanaesexpert-runtime`). A task's
queue is the one it declares, whoever queues it and however (by name from a service or the job sweep, from beat):
`route_to_declared_queue` is the only route. JSON only, late acks with reject-on-worker-lost so that a killed
worker's task is delivered again; every task is idempotent, which makes that safe.

Nothing stays stuck: celery beat (`make run` embeds it in the main worker, compose runs a `beat` service) queues
`aesplatform.common.tasks.job_sweep` every AESP_JOB_SWEEP_S; it re-queues the jobs with no heartbeat for
AESP_JOB_STALE_S (aesplatform.common.jobs). The broker's visibility timeout stays long (an hour): a job whose
worker died is taken up by the sweep within a minute or two, on either broker, not by a redelivery.

Upgrading a running deployment: the task names of earlier releases (`workers.catalog.import_job_run`,
`workers.gpu.*`, `workers.humanaesexpert.*`, ...) stay registered as aliases of the same tasks on the same queues
(`task_former_names` in each tasks module), so messages queued before the upgrade are still consumed.
"""

from __future__ import annotations

import importlib
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aesplatform.settings")

QUEUES = ("cpu", "gpu", "humanaesexpert")
# The packages holding a `tasks` module: the apps, and common (the job sweep; not an installed app).
TASK_PACKAGES = ("aesplatform.common", "aesplatform.catalog", "aesplatform.annotation", "aesplatform.curation",
                 "aesplatform.datasets", "aesplatform.modeling")


def task_named(name: str):
    """The registered task `name`; a task of ours not imported yet by this process (a web process queues tasks by
    name and never imports them) is imported from its module, which its name is."""
    task = app.tasks.get(name)
    if task is None and name.startswith("aesplatform."):
        module = name.rpartition(".")[0]
        if module.rpartition(".")[0] in TASK_PACKAGES:
            importlib.import_module(module)
            task = app.tasks.get(name)
    return task


def route_to_declared_queue(name, args, kwargs, options, task=None, **kw):
    """Celery router: a task goes to the queue its decorator declares (None: Celery's default queue, `cpu`)."""
    task = task or task_named(name)
    queue = getattr(task, "queue", None)
    return {"queue": queue} if queue else None


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
    task_queues=tuple(Queue(name) for name in QUEUES),
    task_routes=(route_to_declared_queue,),
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
    sender.add_periodic_task(period, sender.signature("aesplatform.common.tasks.job_sweep"), name="job-sweep",
                             queue="cpu", expires=period)


app.autodiscover_tasks(list(TASK_PACKAGES))
