"""`make run`'s process supervision (scripts/run_platform.sh), on its own defaults (SQLite, the filesystem broker)
in a throw-away var dir: a worker killed with kill -9 is started again while the web server keeps answering, and
SIGTERM stops every process it started within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.conftest import REPO_ROOT, wait_for
from tests.integration.faults.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.celery_worker]

# what the test environment sets that `make run` would not
_TEST_ONLY = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_BROKER_KEY_PREFIX",
              "DJANGO_SETTINGS_MODULE", "AESP_IMPORT_ROOTS", "DJANGO_MEDIA_ROOT", "AESP_EXPORT_ROOT")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def _main_workers(script: psutil.Process) -> list[psutil.Process]:
    """The Celery main processes (not their pool children, not embedded beat) under the script."""
    found = []
    for process in script.children(recursive=True):
        try:
            cmdline = process.cmdline()
            parent = process.parent()
            if "celery" in cmdline and "worker" in cmdline and parent and "celery" not in parent.cmdline():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def _platform_env(tmp_path) -> tuple[dict[str, str], int]:
    env = {key: value for key, value in os.environ.items() if key not in _TEST_ONLY}
    port = free_port()
    env.update(DJANGO_ENV="development", AESP_VAR_DIR=str(tmp_path / "var"), PY=sys.executable, HOST="127.0.0.1",
               PORT=str(port), WEB_CONCURRENCY="1", WORKER_CONCURRENCY="1", WEB_ACCESS_LOG="",
               AESP_HUMANAESEXPERT_RUNTIME=str(tmp_path / "no-runtime"), STOP_GRACE_S="3",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)]))
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, env=env,
                   check=True, timeout=240)
    return env, port


def _start_run_platform(tmp_path):
    """scripts/run_platform.sh in its own session, its output in run.log: (process, log file, the log's tail, port)."""
    env, port = _platform_env(tmp_path)
    log = open(tmp_path / "run.log", "wb")
    script = subprocess.Popen(["scripts/run_platform.sh"], cwd=REPO_ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)

    def logs() -> str:
        # the whole log: a restarted worker's start-up lines can push an earlier line out of any fixed tail
        return (tmp_path / "run.log").read_text(errors="replace")

    return script, log, logs, port


def _tail_of(logs):
    return lambda: logs()[-4000:]


def _cleanup(script: subprocess.Popen, tmp_path) -> None:
    if script.poll() is None:
        os.killpg(script.pid, signal.SIGKILL)
    for process in psutil.process_iter():
        try:
            if process.environ().get("AESP_VAR_DIR", "").startswith(str(tmp_path)):
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def test_make_run_restarts_a_killed_worker_keeps_the_web_up_and_stops_everything_on_sigterm(tmp_path):
    script, log, logs, port = _start_run_platform(tmp_path)
    tail = _tail_of(logs)
    health = f"http://127.0.0.1:{port}/health/"
    try:
        parent = psutil.Process(script.pid)
        wait_for(lambda: _answers(health), timeout=90, message=f"the web server; log:\n{tail()}")
        worker = wait_for(lambda: _main_workers(parent), timeout=90, message=f"the worker; log:\n{tail()}")[0]
        wait_for(lambda: "beat: Starting" in logs(), timeout=60, message=f"celery beat in the worker; log:\n{tail()}")

        worker.kill()  # kill -9 the worker's main process
        restarted = wait_for(lambda: [w for w in _main_workers(parent) if w.pid != worker.pid], timeout=60,
                             message=f"the worker to be started again; log:\n{tail()}")[0]
        wait_for(lambda: "worker exited (status 137)" in logs(), timeout=30,
                 message=f"the supervisor's note of the kill; log:\n{tail()}")
        assert _answers(health) and script.poll() is None  # the web server stayed up
        wait_for(lambda: "ready." in logs().split("worker exited")[-1], timeout=90,
                 message=f"the restarted worker to be ready; log:\n{tail()}")

        everything = [parent, *parent.children(recursive=True)]
        assert restarted in everything and len(everything) >= 5
        started = time.monotonic()
        script.send_signal(signal.SIGTERM)
        gone, alive = psutil.wait_procs(everything, timeout=10)
        elapsed = time.monotonic() - started
        assert not alive, f"still running {elapsed:.1f} s after SIGTERM: {[p.info for p in alive]}\n{tail()}"
        assert elapsed < 10 and not _answers(health)
    finally:
        _cleanup(script, tmp_path)
        log.close()


def test_ctrl_c_stops_make_run_within_seconds(tmp_path):
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group (the script and its supervisors)."""
    script, log, logs, port = _start_run_platform(tmp_path)
    tail = _tail_of(logs)
    try:
        parent = psutil.Process(script.pid)
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health/"), timeout=90, message=f"the web; log:\n{tail()}")
        wait_for(lambda: " ready." in logs(), timeout=90, message=f"the worker; log:\n{tail()}")
        everything = [parent, *parent.children(recursive=True)]
        started = time.monotonic()
        os.killpg(script.pid, signal.SIGINT)
        _gone, alive = psutil.wait_procs(everything, timeout=10)
        assert not alive, f"still running {time.monotonic() - started:.1f} s after Ctrl-C: {alive}\n{tail()}"
    finally:
        _cleanup(script, tmp_path)
        log.close()
