"""Fixtures shared by every suite: service check, API clients per role, a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import factories
from tests.services import unreachable_services

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    if os.environ.get("AESP_SKIP_SERVICE_CHECK"):
        return
    problems = unreachable_services()
    if problems:
        pytest.exit("\n".join(problems) + "\nThe tests need real PostgreSQL and Redis (see README).", returncode=3)


@pytest.fixture
def annotator_user(db):
    return factories.annotator()


@pytest.fixture
def curator_user(db):
    return factories.curator()


@pytest.fixture
def admin_user(db):
    return factories.admin()


def _api_client(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def annotator_client(annotator_user):
    return _api_client(annotator_user)


@pytest.fixture
def curator_client(curator_user):
    return _api_client(curator_user)


@pytest.fixture
def admin_client_api(admin_user):
    return _api_client(admin_user)


@pytest.fixture
def anonymous_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Each test stores files in its own media dir (the worker fixture uses the session's, see below)."""
    if os.environ.get("AESP_KEEP_MEDIA_ROOT"):
        return
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _own_quality_update_windows(monkeypatch):
    """Each test starts with no consensus-update window open and none owed (a process's state, see
    annotation.services.QualityUpdateWindows): what one test queued never holds back another's."""
    from aesplatform.annotation import services

    monkeypatch.setattr(services, "QUALITY_UPDATE_WINDOWS", services.QualityUpdateWindows())


class CeleryWorker:
    """A real `celery worker` process over the real broker (Redis, or the filesystem broker of `make run` when its
    env says CELERY_BROKER_URL=filesystem://) and the test database. `beat`: celery beat embedded (-B), which
    queues the job sweep (aesplatform.celery)."""

    def __init__(self, env: dict[str, str], queues: str = "cpu,gpu", app: str = "aesplatform", *,
                 concurrency: int = 1, beat: bool = False):
        self.env = env
        self.queues = queues
        self.app = app  # another module exposing the Celery app (fault-injection tests slow some calls down)
        self.concurrency = concurrency
        self.beat = beat
        self.process: subprocess.Popen | None = None
        self.name = f"test-{os.getpid()}-{time.monotonic_ns()}"  # its Celery node is `name@host`
        self.log_path = Path(env["AESP_VAR_DIR"]) / f"worker-{self.name}.log"

    @property
    def filesystem_broker(self) -> bool:
        return self.env.get("CELERY_BROKER_URL", "").startswith("filesystem")

    def start(self) -> None:
        from aesplatform.celery import app

        if not self.filesystem_broker:
            app.control.purge()
        self.log = open(self.log_path, "wb")
        command = [sys.executable, "-m", "celery", "-A", self.app, "worker", "-Q", self.queues,
                   "-c", str(self.concurrency), "--pool", "prefork", "--loglevel", "INFO",
                   "-n", f"{self.name}@%h"]
        if self.beat:
            command += ["-B", "-s", str(self.log_path.with_suffix(".beat-schedule"))]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log_path.read_text()[-4000:]}")
            if self.filesystem_broker:
                # the test process publishes to Redis; a filesystem-broker worker says it is ready in its log
                if " ready." in self.log_path.read_text(errors="replace"):
                    return
            elif app.control.inspect(timeout=1).ping():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"celery worker did not answer a ping in 60 s:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """kill -9 the whole worker (main process and pool children)."""
        import psutil

        if self.process and self.process.poll() is None:
            parent = psutil.Process(self.process.pid)
            for child in parent.children(recursive=True):
                child.kill()
            parent.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def celery_worker_factory(transactional_db, settings):
    """Start real workers against the test database; the test's data must be committed (transactional_db)."""
    from django.db import connection

    settings.MEDIA_ROOT = Path(os.environ["AESP_VAR_DIR"]) / "media"
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "aesplatform.settings_test",
        "DATABASE_URL": database_url,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)]),
    }
    workers: list[CeleryWorker] = []

    def start(queues: str = "cpu,gpu", *, app: str = "aesplatform", pythonpath: tuple[str | Path, ...] = (),
              concurrency: int = 1, beat: bool = False, **extra_env: str) -> CeleryWorker:
        """`pythonpath`: directories put before the repository's on the worker's PYTHONPATH (a runtime overlay,
        e.g. the HumanAesExpert one); `extra_env`: more environment variables."""
        worker_env = {**env, **extra_env}
        if pythonpath:
            worker_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env["PYTHONPATH"]])
        worker = CeleryWorker(worker_env, queues, app, concurrency=concurrency, beat=beat)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_worker(celery_worker_factory):
    return celery_worker_factory()


@pytest.fixture(scope="session")
def humanaesexpert_runtime() -> Path:
    """The pinned runtime overlay of released HumanAesExpert checkpoints (`make humanaesexpert-runtime`)."""
    path = Path(os.environ.get("AESP_HUMANAESEXPERT_RUNTIME") or REPO_ROOT / ".venv-humanaesexpert")
    if not (path / ".installed").is_file():
        pytest.fail(f"the HumanAesExpert runtime is not set up at {path}: run `make humanaesexpert-runtime` "
                    "(`make test` does), or point AESP_HUMANAESEXPERT_RUNTIME at one")
    return path


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, message: str = "condition"):
    """Poll until predicate() is truthy (integration tests wait on a real worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-protocol server on loopback (tests/support/objectstore.py) and the cuttable relay in front of it."""
    from tests.support.objectstore import CuttableProxy, S3Server

    server = S3Server(tmp_path_factory.mktemp("s3-server"))
    server.start()
    proxy = CuttableProxy(server.port)
    proxy.start()
    yield server, proxy
    proxy.stop()
    server.stop()


@pytest.fixture
def s3_storage(s3_server, settings, tmp_path):
    """This test stores everything in its own bucket of the S3 server (Django's default storage switched to
    django-storages' S3 backend, through the relay: `s3_storage.proxy.outage()` cuts it); `s3_storage.env()` gives
    worker processes the same store. This process's storage cache is a fresh folder."""
    from tests.support.objectstore import ObjectStore

    server, proxy = s3_server
    proxy.restore()  # an earlier test's outage never leaks into this one
    store = ObjectStore(server, proxy)
    store.create_bucket()
    settings.STORAGES = {**settings.STORAGES, "default": store.storages_setting()}
    settings.AESP_STORAGE_CACHE_DIR = tmp_path / "storage-cache"
    return store


@pytest.fixture
def import_root(settings, tmp_path):
    """A fresh folder that folder/zip/HumanBeauty imports may read (the only allowed root), small thumbnails."""
    root = tmp_path / "incoming"
    root.mkdir()
    settings.AESP_IMPORT = {**settings.AESP_IMPORT, "ALLOWED_ROOTS": [root], "THUMBNAIL_SIZE": 64}
    return root
