"""gunicorn's configuration for every way the platform is served: `make run`, the Docker image, docker-compose,
the benchmarks in bench/ and the tests that start a web server. `gunicorn -c deploy/gunicorn.conf.py` needs
nothing else; the environment sets what differs between them (12-factor).

Why sync workers (one request at a time per process) and not gthread: the annotation hot path is CPU-bound
Python (database statements take well under a millisecond), so threads only contend for the GIL, and gthread
pins every keep-alive connection to the process that accepted it: with 50 annotators the busiest process serves
several times the connections of the idlest, and their requests wait for it. Sync workers take the next
connection only when idle, from the kernel's first-in-first-out accept queue. bench/taskfetch.py on the 2-core
VM, 50 clients in a closed loop, about the same throughput (347-431 against 385-445 next-task + submit cycles/s):
per request p99 79-99 ms with sync workers against 180-241 with gthread 4x4, per cycle 159-195 against 338-428.
Idle sync workers wait in epoll with EPOLLEXCLUSIVE (aesplatform.common.gunicorn_worker), so a new connection
wakes one of them, not all: 2.6-3.2 ms of gunicorn CPU per cycle at 150 cycles/s instead of 3.8-4.0.

A sync worker is tied up by a slow client for the whole transfer, so in production it sits behind a buffering
proxy (deploy/nginx.conf.template, the `proxy` service of docker-compose.yml), as gunicorn's documentation asks;
`make run` serves the machine itself, where clients are not slow.

Environment:
  WEB_BIND             address to listen on (default 127.0.0.1:8000)
  WEB_CONCURRENCY      worker processes (default 2 x CPU cores + 1)
  WEB_TIMEOUT          seconds a request may run before its worker is replaced (default 120)
  WEB_ACCESS_LOG       where the access log goes ("-": standard output; default: none)
  WEB_MAX_REQUESTS     requests after which a worker is replaced by a fresh one (default 20000; 0: never)
  WEB_LOG_LEVEL        gunicorn's log level (default info)
  FORWARDED_ALLOW_IPS  proxies whose X-Forwarded-* headers gunicorn trusts (gunicorn's own variable)
"""

import multiprocessing
import os
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent

wsgi_app = "aesplatform.wsgi:application"
pythonpath = str(_REPO / "platform")
chdir = str(_REPO)


def _setting(name: str, default: str) -> str:
    return os.environ.get(name) or default  # set but empty counts as unset


bind = [_setting("WEB_BIND", "127.0.0.1:8000")]
worker_class = "aesplatform.common.gunicorn_worker.ExclusiveWakeSyncWorker"
workers = int(_setting("WEB_CONCURRENCY", str(2 * multiprocessing.cpu_count() + 1)))
timeout = int(_setting("WEB_TIMEOUT", "120"))
graceful_timeout = 30
# Connections queue in the kernel while every worker is busy; they are served in arrival order.
backlog = 2048

# A worker replaced now and then returns the memory a long-lived process accumulates (image decoding, caches);
# the jitter keeps the workers from all restarting at once.
max_requests = int(_setting("WEB_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10

accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = _setting("WEB_LOG_LEVEL", "info")
