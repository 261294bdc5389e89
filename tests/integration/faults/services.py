"""Private PostgreSQL and Redis servers and a gunicorn web server, each a process of its own that a fault-injection
test may stop and start (the machine's shared PostgreSQL and Redis are never touched)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.conftest import REPO_ROOT

PG_BIN = Path(os.environ.get("AESP_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, *, open_: bool = True, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port) == open_:
            return
        time.sleep(0.1)
    raise AssertionError(f"port {port} did not {'open' if open_ else 'close'} in {timeout} s")


def postgres_missing() -> str:
    """Why a private PostgreSQL cannot be started here ('' when it can)."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / name).is_file():
            return f"PostgreSQL server binaries not found in {PG_BIN} (set AESP_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user to run a private PostgreSQL as"
    return ""


class PrivatePostgres:
    """A throw-away cluster (initdb, trust auth) on a free port; root runs it as the `postgres` user."""

    def __init__(self):
        # its own folder directly under /tmp: the `postgres` user cannot enter pytest's (root-only) tmp_path
        self.base = Path(tempfile.mkdtemp(prefix="aesp-fault-pg-"))
        self.dir = self.base / "pgdata"
        self.socket_dir = self.base / "pgsock"
        self.log = self.base / "postgres.log"
        self.port = free_port()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def init(self) -> None:
        self.socket_dir.mkdir()
        self.log.touch()
        if os.geteuid() == 0:
            for path in (self.base, self.socket_dir, self.log):
                shutil.chown(path, "postgres")
        self._run("initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def copy_database_from(self, source: dict, name: str) -> None:
        """Create `name` here as a copy (schema and rows) of the database `source` (Django settings_dict)."""
        host, port, user = source["HOST"] or "127.0.0.1", str(source["PORT"] or 5432), source["USER"] or "postgres"
        psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                "-v", "ON_ERROR_STOP=1"]
        subprocess.run([*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'], check=True, timeout=60,
                       capture_output=True)
        dump = subprocess.Popen([str(PG_BIN / "pg_dump"), "-h", host, "-p", port, "-U", user, "--no-owner",
                                 "--no-privileges", source["NAME"]], stdout=subprocess.PIPE)
        subprocess.run([*psql, "-d", name], stdin=dump.stdout, check=True, timeout=120, capture_output=True)
        assert dump.wait(timeout=60) == 0


class PrivateRedis:
    def __init__(self, base: Path):
        self.port = free_port()
        self.log = base / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(self.log)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        wait_port(self.port, open_=False)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


class _LoggedProcess:
    """A child process writing to self.log_path: stopped (terminate, then kill) and its log read back."""

    process: subprocess.Popen | None
    log_path: Path

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if getattr(self, "log", None):
            self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


class Gunicorn(_LoggedProcess):
    """The WSGI app served by gunicorn with the shipped configuration (deploy/gunicorn.conf.py), with the environment
    given."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 2):
        self.port = free_port()
        self.env = env
        self.log_path = log
        self.workers = workers
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(REPO_ROOT / "deploy" / "gunicorn.conf.py"),
                "--graceful-timeout",
                "5",
            ],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={
                **self.env,
                "WEB_BIND": f"127.0.0.1:{self.port}",
                "WEB_CONCURRENCY": str(self.workers),
                "WEB_TIMEOUT": "60",
            },
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.logs()[-4000:]}")
            try:
                if requests.get(f"{self.url}/health/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn did not answer /health/ in 60 s:\n{self.logs()[-4000:]}")



def current_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database), for a server process of its own."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def web_env(**overrides: str) -> dict[str, str]:
    """The environment of a test web server or worker process (test settings, this run's var dir)."""
    return {
        **os.environ,
        "DJANGO_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "aesplatform.settings_test",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)]),
        **overrides,
    }


class PrivateBrokerWorker(_LoggedProcess):
    """A real `celery worker` on a private broker (the test process's Celery app cannot ping it: the worker's own
    log says when it is ready)."""

    def __init__(self, env: dict[str, str], log: Path, queues: str = "cpu"):
        self.env, self.log_path, self.queues = env, log, queues
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "aesplatform", "worker", "-Q", self.queues, "-c", "1",
             "--pool", "prefork", "--loglevel", "INFO", "-n", f"fault-{os.getpid()}-{time.monotonic_ns()}@%h"],
            cwd=REPO_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.logs()[-4000:]}")
            if " ready." in self.logs():
                return
            time.sleep(0.3)
        raise RuntimeError(f"celery worker not ready in 90 s:\n{self.logs()[-4000:]}")



NGINX = os.environ.get("AESP_NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
NGINX_TEMPLATE = REPO_ROOT / "deploy" / "nginx.conf.template"


def nginx_missing() -> str:
    """Why nginx cannot be started here ('' when it can)."""
    if not Path(NGINX).is_file():
        return (f"nginx not found at {NGINX}: install Debian's package (apt-get install -y nginx; .ci/run does) "
                "or point AESP_NGINX at an nginx binary")
    return ""


def nginx_site(template: str, variables: dict[str, str]) -> str:
    """The shipped site template with its ${NAME}s filled in, as nginx's official image does (envsubst of the
    variables it is given; nginx's own $variables stay)."""
    site = template
    for name, value in variables.items():
        site = site.replace("${%s}" % name, value)
    if unfilled := re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", site):
        raise AssertionError(f"unfilled variables in the nginx template: {unfilled}")
    return site


class Nginx(_LoggedProcess):
    """nginx with the shipped site (deploy/nginx.conf.template) in front of `upstream`, on a free port; its files
    (configuration, temporary bodies, pid) in `workdir`."""

    def __init__(self, workdir: Path, *, upstream: str, client_max_body_size: str = "2g"):
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "nginx-error.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.site = nginx_site(NGINX_TEMPLATE.read_text(), {
            "NGINX_PORT": f"127.0.0.1:{self.port}", "NGINX_UPSTREAM": upstream,
            "NGINX_CLIENT_MAX_BODY_SIZE": client_max_body_size,
        })
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        (self.workdir / "site.conf").write_text(self.site)
        # the http{} of nginx's official image, reduced to what the site needs; workers run as the user running
        # the test (root's would be `nobody`, who cannot write the temporary files here)
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        (self.workdir / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {self.workdir}/nginx.pid;
error_log {self.log_path} warn;
events {{ worker_connections 256; }}
http {{
    access_log {self.workdir}/access.log;
    client_body_temp_path {self.workdir}/client_body;
    proxy_temp_path {self.workdir}/proxy;
    fastcgi_temp_path {self.workdir}/fastcgi;
    uwsgi_temp_path {self.workdir}/uwsgi;
    scgi_temp_path {self.workdir}/scgi;
    include {self.workdir}/site.conf;
}}
""")
        self.log = open(self.workdir / "nginx-stdout.log", "wb")
        self.process = subprocess.Popen([NGINX, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"),
                                         "-e", str(self.log_path)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout=20)
        except AssertionError:
            raise RuntimeError(f"nginx did not start:\n{self.logs()[-4000:]}") from None
