"""Load test: simulated annotators rating through gunicorn the way the annotate page does, for a bounded time.

    .venv/bin/python bench/load.py                                  # 100 annotators, 60 s, 20,000 images
    .venv/bin/python bench/load.py --annotators 20 --seconds 10 --images 2000    # smaller, quicker

It creates its own PostgreSQL database (default `aesp_load`, on the server of $BENCH_PG_URL or
postgres://postgres@127.0.0.1:5432): migrated, one active campaign (overall mode, redundancy 3) over --images image
rows that share one real JPEG file, annotators in the campaign. Then gunicorn (loopback only, the shipped
deploy/gunicorn.conf.py) and, in one asyncio loop, every annotator on its own connection (kept alive where the
server keeps it):

1. signs in through the login form (a real password check; before the measured window),
2. opens the campaign's annotate page (its CSRF token), leases the task on screen and the one preloaded behind it,
3. loops until the time is up: submits the task on screen (session cookie + CSRF header, a fresh idempotency key),
   leases the next one with the preloaded one as `held`, fetches the new task's image (the page's preload).

A request that fails on the network or answers 5xx/429 is retried with the same body (the same idempotency key),
with the page's backoff. A share of submits (--duplicate-share) is sent a second time after it was answered (a
double click, a retry after a lost response): the server must answer it with the first result and store nothing.
After the deadline no new cycle starts; submits in flight finish (their retries bounded by --drain-seconds).

Bounded in time (--seconds, --drain-seconds) and count (--max-requests). Prints one JSON line: requests/s,
latency p50/p99 (all requests and per kind), errors, retries, annotations acknowledged (distinct keys answered
200/201) vs stored (rows of the bench annotators), whether they are the same keys, the CPU each party spent and
the machine's load. Exits 1 when annotations were lost or doubled (acknowledged != stored) or any request failed.
Drops the database at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from taskfetch import (  # noqa: E402  the sibling bench's loader, client and server control
    PY,
    REPO,
    _Client,
    _cpu_seconds,
    _machine_busy,
    admin_sql,
    bench_env,
    gunicorn_described,
    gunicorn_start,
    gunicorn_stop,
    load,
    pct,
)

PASSWORD = "load-bench-password"
CSRF_IN_PAGE = re.compile(rb'data-csrf="([^"]+)"')
CSRF_IN_FORM = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
RETRY_STATUSES = {429, 500, 502, 503, 504}


class Refused(Exception):
    """A request answered with a status the page would not retry and the bench did not expect."""


class Annotator:
    """One browser: a keep-alive connection with the session and CSRF cookies the server set."""

    def __init__(self, port: int, username: str, stats: Stats):
        self.client = _Client(port)
        self.username = username
        self.stats = stats
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    async def call(self, kind: str, method: str, path: str, body: bytes = b"", content_type: str = "application/json",
                   *, ok=(200,), retry: bool = True) -> tuple[int, bytes]:
        """One request as the page sends it; with `retry`, retried like postWithRetry (0.5 s doubling to 15 s)."""
        delay = 0.5
        while True:
            headers = ""
            if self.cookies:
                headers += "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()) + "\r\n"
            if method == "POST":
                headers += f"Content-Type: {content_type}\r\nX-CSRFToken: {self.csrf}\r\n"
            self.stats.count_request()
            started = time.perf_counter()
            try:
                status, head, data = await self.client.request(method, path, body, headers)
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                self.client.close()
                status, head, data = None, [], repr(exc).encode()
            self.stats.latency(kind, (time.perf_counter() - started) * 1000)
            for line in head:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"set-cookie":
                    cookie = value.decode().split(";", 1)[0].strip()
                    key, _, val = cookie.partition("=")
                    self.cookies[key] = val
            if status in ok:
                return status, data
            if not retry or (status is not None and status not in RETRY_STATUSES) or self.stats.past_drain():
                self.stats.error(kind, status, data)
                raise Refused(f"{kind} {status}")
            self.stats.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def sign_in(self) -> None:
        _, page = await self.call("login", "GET", "/login/")
        token = CSRF_IN_FORM.search(page).group(1).decode()
        form = urllib.parse.urlencode({"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token})
        self.csrf = token
        await self.call("login", "POST", "/login/", form.encode(), "application/x-www-form-urlencoded", ok=(302,))
        if "sessionid" not in self.cookies:
            raise Refused(f"login of {self.username} set no session")

    async def open_page(self, campaign_id: int) -> None:
        _, page = await self.call("page", "GET", f"/annotate/{campaign_id}/")
        self.csrf = CSRF_IN_PAGE.search(page).group(1).decode()

    async def lease(self, campaign_id: int, held: list[int]) -> dict | None:
        status, data = await self.call(
            "next", "POST", f"/api/campaigns/{campaign_id}/next-task/", json.dumps({"held": held}).encode(),
            ok=(200, 204),
        )
        return json.loads(data) if status == 200 else None

    async def submit(self, assignment: dict, duplicate: bool) -> None:
        key = str(uuid.uuid4())
        body = json.dumps({"scores": {"comprehensive": round(random.random(), 3)}, "idempotency_key": key,
                           "time_spent_ms": random.randint(800, 9000), "ui_version": "load/1"}).encode()
        path = f"/api/assignments/{assignment['id']}/submit/"
        self.stats.sent.add(key)
        status, data = await self.call("submit", "POST", path, body, ok=(200, 201))
        first = json.loads(data)["id"]
        self.stats.acknowledged[key] = first
        if duplicate:
            self.stats.duplicates += 1
            status, data = await self.call("submit", "POST", path, body, ok=(200,))
            if json.loads(data)["id"] != first:
                self.stats.error("submit", status, b"a repeated submit answered another annotation")

    async def run(self, campaign_id: int, stop_at: float, duplicate_share: float) -> None:
        try:
            await self.open_page(campaign_id)
            on_screen = await self.lease(campaign_id, [])
            preloaded = await self.lease(campaign_id, [on_screen["id"]]) if on_screen else None
            while on_screen and time.monotonic() < stop_at and not self.stats.count_exhausted():
                await self.submit(on_screen, duplicate=random.random() < duplicate_share)
                held = [preloaded["id"]] if preloaded else []
                following = await self.lease(campaign_id, held) if preloaded else None
                if following:
                    await self.call("image", "GET", following["image_url"])
                on_screen, preloaded = preloaded, following
        except Refused:
            pass  # counted in stats.errors
        finally:
            self.client.close()


class Stats:
    def __init__(self, max_requests: int):
        self.max_requests = max_requests
        self.requests = 0
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.retries = 0
        self.duplicates = 0
        self.sent: set[str] = set()
        self.acknowledged: dict[str, int] = {}
        self.drain_until = float("inf")

    def count_request(self) -> None:
        self.requests += 1

    def count_exhausted(self) -> bool:
        return self.requests >= self.max_requests

    def past_drain(self) -> bool:
        return time.monotonic() > self.drain_until

    def latency(self, kind: str, ms: float) -> None:
        self.latencies[kind].append(ms)

    def error(self, kind: str, status, data: bytes) -> None:
        self.errors.append(f"{kind} {status} {data[:160]!r}")


def prepare(db_url: str, *, images: int, annotators: int, media_root: Path) -> int:
    """The bench database (taskfetch's loader: images, annotators with tokens, one campaign), the annotators'
    password, and the image file every row points at. Returns the campaign id."""
    import psycopg
    from PIL import Image

    loaded = load(db_url, images=images, campaigns=1, annotators=annotators)
    (media_root / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (1024, 768), (180, 120, 90)).save(media_root / "images" / "bench.jpg", quality=85)
    hashed = _password_hash(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE auth_user SET password = %s WHERE username LIKE 'bench%%'", (hashed,))
    return loaded["campaign_ids"][0]


def _password_hash(db_url: str) -> str:
    """PASSWORD hashed by the platform's own hasher (what a login checks against), in a Django process."""
    import subprocess

    code = "import django; django.setup(); from django.contrib.auth.hashers import make_password; " \
           f"print(make_password({PASSWORD!r}))"
    out = subprocess.run([PY, "-c", code], env=bench_env(db_url), cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def stored_keys(db_url: str) -> tuple[int, set[str]]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT a.idempotency_key::text FROM annotation_annotation a JOIN auth_user u ON u.id = a.annotator_id "
            "WHERE u.username LIKE 'bench%%'"
        ).fetchall()
    return len(rows), {r[0] for r in rows}


def measure(env: dict, *, db_url: str, campaign_id: int, annotators: int, seconds: float, drain_seconds: float,
            max_requests: int, duplicate_share: float, workers: int | None, worker_class: str | None,
            threads: int | None, port: int) -> dict:
    import psutil
    import psycopg

    stats = Stats(max_requests)
    server = gunicorn_start(env, port=port, workers=workers, worker_class=worker_class, threads=threads)
    served_by = gunicorn_described(server, worker_class, threads)
    try:
        people = [Annotator(port, f"bench{i}", stats) for i in range(1, annotators + 1)]
        gunicorn = [server.pid] + [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
        marks = {}

        async def everything():
            # one event loop for the whole run: the connections the sign-in opened stay open for the work
            t = time.monotonic()
            results = await asyncio.gather(*(p.sign_in() for p in people), return_exceptions=True)
            signed_in = [p for p, r in zip(people, results) if not isinstance(r, BaseException)]
            marks["sign_in_s"] = time.monotonic() - t
            marks["login_latency"] = stats.latencies.pop("login", [])
            marks["login_errors"] = len(stats.errors)
            marks["requests_before"] = stats.requests
            marks["signed_in"] = len(signed_in)
            with psycopg.connect(db_url, autocommit=True) as conn:
                backends = [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()]
            marks["load_before"] = os.getloadavg()
            marks["cpu0"] = (time.process_time(), _cpu_seconds(gunicorn), _cpu_seconds(backends), _machine_busy())
            t0 = time.monotonic()
            stop_at = t0 + seconds
            stats.drain_until = stop_at + drain_seconds
            await asyncio.gather(*(p.run(campaign_id, stop_at, duplicate_share) for p in signed_in))
            marks["elapsed"] = time.monotonic() - t0
            marks["cpu1"] = (time.process_time(), _cpu_seconds(gunicorn), _cpu_seconds(backends), _machine_busy())
            marks["load_after"] = os.getloadavg()

        asyncio.run(everything())
    finally:
        gunicorn_stop(server)

    stored, keys = stored_keys(db_url)
    acknowledged = set(stats.acknowledged)
    requests = stats.requests - marks["requests_before"]
    cpu0, cpu1, elapsed, login_errors = marks["cpu0"], marks["cpu1"], marks["elapsed"], marks["login_errors"]
    everything = [ms for values in stats.latencies.values() for ms in values]
    busy = (cpu1[3][0] - cpu0[3][0]) / max(cpu1[3][1] - cpu0[3][1], 1.0)
    per_request = lambda s: round(s * 1000 / requests, 3) if requests else None  # noqa: E731
    return {
        "annotators": annotators,
        "signed_in": marks["signed_in"],
        "sign_in_s": round(marks["sign_in_s"], 1),
        "login_p50_ms": round(pct(marks["login_latency"], 50) or 0, 1),
        "login_errors": login_errors,
        "gunicorn": served_by,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "latency_p50_ms": round(pct(everything, 50) or 0, 1),
        "latency_p99_ms": round(pct(everything, 99) or 0, 1),
        "by_kind": {
            kind: {"requests": len(v), "p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)}
            for kind, v in sorted(stats.latencies.items())
        },
        "errors": len(stats.errors) - login_errors,
        "error_samples": stats.errors[:5],
        "retries": stats.retries,
        "duplicate_submits": stats.duplicates,
        "annotations_sent": len(stats.sent),
        "annotations_acknowledged": len(acknowledged),
        "annotations_stored": stored,
        "stored_equals_acknowledged": stored == len(acknowledged) and keys == acknowledged,
        "cpu_ms_per_request_client": per_request(cpu1[0] - cpu0[0]),
        "cpu_ms_per_request_gunicorn": per_request(cpu1[1] - cpu0[1]),
        "cpu_ms_per_request_postgres": per_request(cpu1[2] - cpu0[2]),
        "machine_busy_share": round(busy, 3),
        "loadavg_before": [round(x, 2) for x in marks["load_before"]],
        "loadavg_after": [round(x, 2) for x in marks["load_after"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound of the measured window")
    parser.add_argument("--drain-seconds", type=float, default=30.0,
                        help="after it, at most this long for in-flight submits")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="count bound")
    parser.add_argument("--images", type=int, default=20_000, help="tasks in the campaign (redundancy 3)")
    parser.add_argument("--duplicate-share", type=float, default=0.02, help="share of submits sent twice")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: deploy/gunicorn.conf.py's)")
    parser.add_argument("--worker-class",
                        help="gunicorn worker class instead of the configuration's sync (e.g. gthread)")
    parser.add_argument("--threads", type=int, help="threads per worker (gthread)")
    parser.add_argument("--port", type=int, default=18432)
    parser.add_argument("--database", default="aesp_load")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    db_url = f"{server_url}/{args.database}"
    media = tempfile.TemporaryDirectory(prefix="aesp-load-")
    env = {**bench_env(db_url), "DJANGO_DB_PREPARED_STATEMENTS": "1",
           "DJANGO_MEDIA_ROOT": str(Path(media.name) / "media"), "AESP_VAR_DIR": media.name}
    admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}"')
    admin_sql(db_url, f'CREATE DATABASE "{args.database}"')
    try:
        import subprocess

        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
        campaign_id = prepare(db_url, images=args.images, annotators=args.annotators,
                              media_root=Path(media.name) / "media")
        figures = measure(
            env, db_url=db_url, campaign_id=campaign_id, annotators=args.annotators, seconds=args.seconds,
            drain_seconds=args.drain_seconds, max_requests=args.max_requests, duplicate_share=args.duplicate_share,
            workers=args.workers, worker_class=args.worker_class, threads=args.threads, port=args.port,
        )
        figures["cpu_count"] = os.cpu_count()
        print(json.dumps(figures))
        return (
            0 if figures["stored_equals_acknowledged"] and not figures["errors"] and not figures["login_errors"] else 1
        )
    finally:
        try:
            from celery import Celery

            Celery(broker=env["CELERY_BROKER_URL"]).control.purge()
        except Exception:  # noqa: BLE001  the queue is the bench's own; a failed purge is harmless
            pass
        media.cleanup()
        if not args.keep:
            time.sleep(0.5)
            admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
