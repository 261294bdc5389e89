"""Tasks live in `aesplatform/<app>/tasks.py`, are named by their module path and go to the queue they declare,
whoever queues them by name; the names of an earlier release still reach the same code on the same queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.apps import apps

from aesplatform.celery import QUEUES, TASK_PACKAGES, app
from aesplatform.common.jobqueue import task_send
from aesplatform.common.jobs import job_models
from tests.conftest import REPO_ROOT

FORMER_NAMES = {
    "workers.catalog.import_job_run": "aesplatform.catalog.tasks.import_job_run",
    "workers.annotation.campaign_quality_update": "aesplatform.annotation.tasks.campaign_quality_update",
    "workers.datasets.export_run": "aesplatform.datasets.tasks.export_run",
    "workers.gpu.filter_run_execute": "aesplatform.curation.tasks.filter_run_execute",
    "workers.gpu.training_job_run": "aesplatform.modeling.tasks.training_job_run",
    "workers.gpu.prescore_run_execute": "aesplatform.modeling.tasks.prescore_run_execute",
    "workers.humanaesexpert.prescore_run_execute": "aesplatform.modeling.tasks.humanaesexpert_prescore_run_execute",
    "workers.jobs.job_sweep": "aesplatform.common.tasks.job_sweep",
}


def _our_tasks() -> dict:
    app.loader.import_default_modules()  # what a worker does when it starts
    return {name: task for name, task in app.tasks.items() if name.startswith("aesplatform.")}


def _queue(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def test_every_task_is_named_by_its_module_path_and_declares_a_known_queue():
    tasks = _our_tasks()
    assert tasks
    for name, task in tasks.items():
        module, _, function = name.rpartition(".")
        assert module.endswith(".tasks") and module.rpartition(".")[0] in TASK_PACKAGES, name
        assert task.__wrapped__.__module__ == module and task.__wrapped__.__name__ == function, name
        assert task.queue in QUEUES and _queue(name) == task.queue, name


def test_every_job_kind_names_a_registered_task():
    tasks = _our_tasks()
    run, version = apps.get_model("modeling", "PrescoreRun"), apps.get_model("modeling", "ModelVersion")
    named = {model._meta.label: model().job_task_name() for model in job_models() if model is not run}
    assert set(named) == {"catalog.ImportJob", "curation.FilterRun", "datasets.Export", "modeling.TrainingJob"}
    assert all(name in tasks for name in named.values()), named
    queues = {backend: _queue(run(model_version=version(backend=backend)).job_task_name())
              for backend in ("model_core", "humanaesexpert")}
    assert queues == {"model_core": "gpu", "humanaesexpert": "humanaesexpert"}


def test_the_names_of_the_earlier_release_run_the_same_code_on_the_same_queue():
    tasks = _our_tasks()
    assert {name for name in app.tasks if name.startswith("workers.")} == set(FORMER_NAMES)
    for former, current in FORMER_NAMES.items():
        assert app.tasks[former].__wrapped__ is tasks[current].__wrapped__, former
        assert _queue(former) == _queue(current), former
    assert {_queue(name) for name in FORMER_NAMES} == set(QUEUES)


def test_a_process_that_never_imported_the_tasks_routes_them_by_name():
    """A web process queues by name and imports no tasks module until the router needs the declared queue."""
    names = ["aesplatform.modeling.tasks.training_job_run",
             "aesplatform.modeling.tasks.humanaesexpert_prescore_run_execute",
             "aesplatform.catalog.tasks.import_job_run", "aesplatform.common.tasks.job_sweep", "celery.backend_cleanup"]
    code = (
        "import json, sys, django\n"
        "django.setup()\n"
        "from aesplatform.celery import app\n"
        "before = sorted(m for m in sys.modules if m.endswith('.tasks') and m.startswith('aesplatform'))\n"
        f"queues = [app.amqp.router.route({{}}, n)['queue'].name for n in {names!r}]\n"
        "print(json.dumps([before, queues]))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "aesplatform.settings_test",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=REPO_ROOT, timeout=120)
    before, queues = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == []
    assert queues == ["gpu", "humanaesexpert", "cpu", "cpu", "cpu"]


def test_the_enqueue_helper_publishes_through_the_task_with_its_own_options(monkeypatch):
    """By name, yet as the task declares it: e.g. a task that ignores its result is published without subscribing
    to the result backend (which, down with the broker, would hold an annotator's submit)."""
    name = "aesplatform.annotation.tasks.campaign_quality_update"
    task = _our_tasks()[name]
    sent = []
    monkeypatch.setattr(task, "apply_async", lambda args, **options: sent.append((tuple(args), options)))
    task_send(name, 7, None, countdown=3)
    assert sent == [((7, None), {"countdown": 3})] and task.ignore_result
    with pytest.raises(LookupError):
        task_send("aesplatform.catalog.tasks.no_such_task", 1)
