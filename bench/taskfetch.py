"""Benchmark of task distribution: the next-task query at scale, and next-task + submit cycles through gunicorn.

    .venv/bin/python bench/taskfetch.py                       # 1,000,000 images, 3,000,000 tasks, 50 clients
    .venv/bin/python bench/taskfetch.py --images 20000 --campaigns 3 --seconds 10   # smaller, quicker

It creates its own PostgreSQL database (default `aesp_bench`, on the server of $BENCH_PG_URL or
postgres://postgres@127.0.0.1:5432), migrates it, bulk-loads images and tasks with generate_series (3 campaigns
over the same images: 3 tasks per image; secondary indexes built after the rows, FK triggers off while loading),
measures, and drops the database at the end (--keep keeps it, --reuse measures a kept one again).
Everything stays on loopback. Prints one JSON line of figures.

HTTP phase: gunicorn with the shipped configuration (deploy/gunicorn.conf.py: sync workers, 2 x cores + 1 of them;
--workers, --worker-class and --threads override it), persistent database connections (DJANGO_CONN_MAX_AGE)
and prepared statements (DJANGO_DB_PREPARED_STATEMENTS=1, see settings.py; --no-prepared without); 50 clients in
one asyncio loop, each with its own API token and connection (kept alive as long as the server keeps it: sync
workers close it after every response, gthread keeps it), next-task then submit, no think time
(closed loop: throughput at saturation), after an unmeasured warm-up. With --rate R the clients instead start
cycles on a fixed schedule, R per second in all, and latency counts from each cycle's scheduled start: the
latency at a given throughput. The figures include the CPU each party spent per cycle (client, gunicorn, the
bench database's PostgreSQL backends), how busy the whole machine was and its load average: the client shares
the machine's cores with the server, and so do other users of a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def admin_sql(base_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(base_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


BULK_TABLES = ("catalog_image", "annotation_task")


def _drop_secondary_indexes(conn) -> list[str]:
    """Drop the bulk tables' indexes and UNIQUE constraints except primary keys; return the SQL that rebuilds them.

    Building an index once over loaded rows is several times faster than maintaining it row by row.
    """
    rebuild = []
    for table in BULK_TABLES:
        for name, definition in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'u'",
            (table,),
        ).fetchall():
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for name, definition in conn.execute(
            """SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
               WHERE x.indrelid = %s::regclass AND NOT x.indisprimary
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)""",
            (table,),
        ).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
            rebuild.append(definition)
    return rebuild


def load(db_url: str, *, images: int, campaigns: int, annotators: int) -> dict:
    """generate_series INSERTs with the bulk tables' secondary indexes dropped and rebuilt after, and the foreign
    key triggers off during the load (session_replication_role = replica: the rows are consistent by
    construction; needs a superuser, else the load just runs with them)."""
    import psycopg

    t0 = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        try:
            conn.execute("SET session_replication_role = replica")
        except psycopg.Error:
            pass
        rebuild = _drop_secondary_indexes(conn)
        conn.execute(
            """
            INSERT INTO catalog_image (created_at, updated_at, sha256, phash, width, height, format, mode, file_size,
                                       original_name, source, file, thumbnail, status)
            SELECT now(), now(), encode(sha256(i::text::bytea), 'hex'), lpad(to_hex(i), 16, '0'), 64, 48, 'JPEG', 'RGB',
                   100, 'b' || i || '.jpg', 'bench', 'images/bench.jpg', 'thumbs/bench.jpg', 'in_campaign'
            FROM generate_series(1, %s) AS i
            """,
            (images,),
        )
        conn.execute(
            """
            INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                                   date_joined)
            SELECT '!', false, 'bench' || i, '', '', '', false, true, now() FROM generate_series(0, %s) AS i
            """,
            (annotators,),
        )
        conn.execute(
            "INSERT INTO auth_user_groups (user_id, group_id) SELECT u.id, g.id FROM auth_user u, auth_group g "
            "WHERE u.username LIKE 'bench%%' AND g.name = 'annotator'"
        )
        conn.execute(
            "INSERT INTO authtoken_token (key, user_id, created) SELECT md5(u.username), u.id, now() FROM auth_user u "
            "WHERE u.username LIKE 'bench%%'"
        )
        creator = conn.execute("SELECT id FROM auth_user WHERE username = 'bench0'").fetchone()[0]
        campaign_ids = []
        for c in range(campaigns):
            campaign_ids.append(
                conn.execute(
                    """INSERT INTO annotation_campaign (created_at, updated_at, name, mode, redundancy, gold_ratio,
                       show_prescores, instructions, state, task_order, lease_seconds, created_by_id)
                       VALUES (now(), now(), %s, 'overall', 3, 0, false, '', 'active', 'random', 900, %s)
                       RETURNING id""",
                    (f"bench {c}", creator),
                ).fetchone()[0]
            )
            conn.execute(
                "INSERT INTO annotation_campaign_annotators (campaign_id, user_id) "
                "SELECT %s, id FROM auth_user WHERE username LIKE 'bench%%'",
                (campaign_ids[-1],),
            )
        conn.execute(
            """INSERT INTO annotation_task (campaign_id, image_id, is_gold, priority, state, submitted_count,
                                            active_lease_count)
               SELECT c, i.id, false, random(), 'open', 0, 0 FROM unnest(%s::bigint[]) AS c, catalog_image i""",
            (campaign_ids,),
        )
        loaded_s = time.monotonic() - t0
        conn.execute("SET session_replication_role = DEFAULT")
        for sql in rebuild:
            conn.execute(sql)
        indexed_s = time.monotonic() - t0 - loaded_s
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        try:  # write the loaded pages out now, not during the measurement (commits would wait behind it)
            conn.execute("CHECKPOINT")
        except psycopg.Error:
            pass
        tasks = conn.execute("SELECT count(*) FROM annotation_task").fetchone()[0]
    return {
        "load_s": round(time.monotonic() - t0, 1), "load_rows_s": round(loaded_s, 1),
        "load_index_s": round(indexed_s, 1),
        "campaign_ids": campaign_ids, "tasks": tasks,
    }


def query_latency(env: dict, campaign_id: int, samples: int) -> dict:
    """p50/p99 of the next-task SELECT ... FOR UPDATE SKIP LOCKED (and of the whole lease service), in-process,
    for a random annotator each time (the statement of hotpath.next_task_locked)."""
    code = f"""
import json, time, random, django
django.setup()
from django.db import connection, transaction
from django.contrib.auth import get_user_model
from aesplatform.annotation import selectors, services
from aesplatform.annotation.models import Campaign
campaign = Campaign.objects.get(pk={campaign_id})
users = list(get_user_model().objects.filter(username__startswith='bench'))
query_ms, lease_ms = [], []
sql = None
for k in range({samples}):
    user = random.choice(users)
    with transaction.atomic():
        sid = transaction.savepoint()
        t = time.perf_counter()
        mine = selectors.campaign_for_lease(campaign_id=campaign.id, user=user)  # as the view does
        a = services.task_lease_next(campaign=mine.campaign, annotator=user, held=[-1, -2], read=mine)
        lease_ms.append((time.perf_counter() - t) * 1000)
        transaction.savepoint_rollback(sid)
    if sql is None:
        from aesplatform.annotation import hotpath
        sql = hotpath._next_task_sql(connection.vendor)  # the statement task_lease_next runs
    params = [campaign.id, campaign.redundancy, user.id]
    with transaction.atomic():
        with connection.cursor() as cur:
            p = list(params)
            t = time.perf_counter()
            cur.execute(sql, p)
            cur.fetchall()
            query_ms.append((time.perf_counter() - t) * 1000)
with transaction.atomic(), connection.cursor() as cur:
    cur.execute("EXPLAIN " + sql, list(params))
    plan = [r[0] for r in cur.fetchall()]
print(json.dumps({{"query_ms": query_ms, "lease_ms": lease_ms, "plan": plan}}))
"""
    out = subprocess.run([PY, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "next_task_query_p50_ms": round(pct(data["query_ms"], 50), 3),
        "next_task_query_p99_ms": round(pct(data["query_ms"], 99), 3),
        "lease_service_p50_ms": round(pct(data["lease_ms"], 50), 3),
        "lease_service_p99_ms": round(pct(data["lease_ms"], 99), 3),
        "plan": data["plan"][:6],
    }


class _Client:
    """One keep-alive HTTP/1.1 connection over asyncio streams: the least client CPU per request in pure Python
    (no thread per client, no GIL hand-offs), so that the 2 cores the bench shares go to the server."""

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.head = (f"Authorization: Token {token}\r\n" if token else "") + "Host: 127.0.0.1\r\n"
        self.reader = self.writer = None

    async def connect(self):
        import asyncio

        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        status, _, data = await self.request("POST", path, body, "Content-Type: application/json\r\n")
        return status, data

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, list[bytes], bytes]:
        """(status, header lines, body) of one request on the kept-alive connection (reconnecting when needed)."""
        if self.writer is None:
            await self.connect()
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n{self.head}{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        keep = True
        lines = head.split(b"\r\n")[1:]
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        data = await self.reader.readexactly(length) if length else b""
        if not keep:
            self.close()
        return status, lines, data


def _cpu_seconds(pids) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat (every process, the other users' included)."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def bench_env(db_url: str) -> dict:
    """The environment of the bench's Django processes: development settings with DEBUG off, persistent database
    connections, a broker database of the bench's own (purged at the end)."""
    return {
        **os.environ,
        "DJANGO_ENV": "development",
        "DJANGO_DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "aesplatform.settings",
        "DATABASE_URL": db_url,
        "DJANGO_CONN_MAX_AGE": "600",
        "DJANGO_LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)]),
    }


GUNICORN_CONFIG = REPO / "deploy" / "gunicorn.conf.py"


def gunicorn_start(env: dict, *, port: int, workers: int | None = None, worker_class: str | None = None,
                   threads: int | None = None) -> subprocess.Popen:
    """gunicorn with the shipped configuration (deploy/gunicorn.conf.py) on 127.0.0.1:`port`, returned once /health/
    answers (60 s at most). `workers`, `worker_class` and `threads` override the configuration, for comparisons."""
    overrides = []
    if worker_class:
        overrides += ["-k", worker_class, "--keep-alive", "30"]  # gthread keeps connections; sync closes them
    if threads:
        overrides += ["--threads", str(threads)]
    server_env = {**env, "WEB_BIND": f"127.0.0.1:{port}", "WEB_LOG_LEVEL": "warning"}
    if workers:
        server_env["WEB_CONCURRENCY"] = str(workers)
    server = subprocess.Popen(
        [PY, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), *overrides],
        env=server_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health/")
            c.getresponse().read()
            return server
        except OSError:
            time.sleep(0.3)
    gunicorn_stop(server)
    raise RuntimeError("gunicorn did not answer /health/ within 60 s")


def gunicorn_described(server: subprocess.Popen, worker_class: str | None, threads: int | None) -> str:
    """What served the run, e.g. "5 workers (sync, deploy/gunicorn.conf.py)" or "4 workers x 4 threads (gthread)"."""
    import psutil

    workers = len(psutil.Process(server.pid).children())
    if worker_class is None:
        return f"{workers} workers (sync, woken one at a time: deploy/gunicorn.conf.py)"
    if worker_class == "gthread":
        return f"{workers} workers x {threads or 1} threads (gthread)"
    return f"{workers} workers ({worker_class})"


def gunicorn_stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def http_cycles(
    env: dict, *, db_url: str, campaign_ids, clients: int, seconds: float, warmup: float, max_cycles: int,
    workers: int | None, threads: int | None, port: int, worker_class: str | None = None, rate: float = 0.0,
) -> dict:
    import asyncio
    import hashlib

    import psutil
    import psycopg

    server = gunicorn_start(env, port=port, workers=workers, threads=threads, worker_class=worker_class)
    served_by = gunicorn_described(server, worker_class, threads)
    try:
        tokens = [hashlib.md5(f"bench{i}".encode()).hexdigest() for i in range(1, clients + 1)]
        latencies: list[float] = []
        request_latencies: list[float] = []  # next-task and submit, each on its own
        errors: list[str] = []
        measuring = [False]
        count = [0]

        async def client(index: int, stop_at: float):
            conn = _Client(port, tokens[index])
            campaign = campaign_ids[index % len(campaign_ids)]
            next_path = f"/api/campaigns/{campaign}/next-task/"
            # --rate: each client starts its cycles on a fixed schedule (one every clients/rate seconds, phases
            # spread); a cycle's latency counts from its scheduled start, so time spent queued behind a late
            # cycle is measured too (no coordinated omission)
            interval = clients / rate if rate else 0.0
            scheduled = time.perf_counter() + interval * index / clients
            while time.monotonic() < stop_at and count[0] < max_cycles:
                if interval:
                    now = time.perf_counter()
                    if scheduled > now:
                        await asyncio.sleep(scheduled - now)
                    t = scheduled
                    scheduled += interval
                else:
                    t = time.perf_counter()
                try:
                    sent_at = time.perf_counter()
                    status, body = await conn.post(next_path, b"{}")
                    if status != 200:
                        errors.append(f"next {status} {body[:120]!r}")
                        continue
                    leased_at = time.perf_counter()
                    assignment = json.loads(body)["id"]
                    payload = (
                        '{"scores": {"comprehensive": 0.5}, "idempotency_key": "%s", "time_spent_ms": 1000}'
                        % uuid.uuid4()
                    ).encode()
                    status, body = await conn.post(f"/api/assignments/{assignment}/submit/", payload)
                    if status != 201:
                        errors.append(f"submit {status} {body[:120]!r}")
                        continue
                except (OSError, EOFError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(repr(exc))
                    conn.close()
                    continue
                if measuring[0]:
                    done = time.perf_counter()
                    latencies.append((done - t) * 1000)
                    request_latencies.extend(((leased_at - sent_at) * 1000, (done - leased_at) * 1000))
                    count[0] += 1
            conn.close()

        async def run(duration: float):
            stop_at = time.monotonic() + duration
            await asyncio.gather(*(client(i, stop_at) for i in range(clients)))

        # warm-up (imports, connections, caches), not measured
        asyncio.run(run(warmup))
        errors.clear()

        gunicorn = [server.pid] + [p.pid for p in psutil.Process(server.pid).children(recursive=True)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            db_backends = [
                r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            ]
        load_before = os.getloadavg()
        cpu0 = (time.process_time(), _cpu_seconds(gunicorn), _cpu_seconds(db_backends), _machine_busy())
        measuring[0] = True
        t0 = time.monotonic()
        asyncio.run(run(seconds))
        elapsed = time.monotonic() - t0
        cpu1 = (time.process_time(), _cpu_seconds(gunicorn), _cpu_seconds(db_backends), _machine_busy())
        load_after = os.getloadavg()
    finally:
        gunicorn_stop(server)
    cycles = len(latencies)
    busy = (cpu1[3][0] - cpu0[3][0]) / max(cpu1[3][1] - cpu0[3][1], 1.0)
    per_cycle = lambda seconds_: round(seconds_ * 1000 / cycles, 3) if cycles else None  # noqa: E731
    ours = (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1]) + (cpu1[2] - cpu0[2])
    return {
        "http_clients": clients,
        "offered_cycles_per_s": rate or "as fast as answered (closed loop)",
        "gunicorn": served_by,
        "http_seconds": round(elapsed, 1),
        "cycles": cycles,
        "cycles_per_s": round(cycles / elapsed, 1),
        "cycle_p50_ms": round(pct(latencies, 50) or 0, 1),
        "cycle_p99_ms": round(pct(latencies, 99) or 0, 1),
        # 50 clients in a closed loop with no think time: the mean cycle time is clients / throughput (Little's law,
        # 167 ms at 300 cycles/s), so the latency a user of the server sees is the one per request
        "request_p50_ms": round(pct(request_latencies, 50) or 0, 1),
        "request_p99_ms": round(pct(request_latencies, 99) or 0, 1),
        "errors": len(errors),
        "error_samples": errors[:3],
        # CPU per cycle by who spent it, and how busy the whole (shared) machine was meanwhile
        "cpu_ms_per_cycle_client": per_cycle(cpu1[0] - cpu0[0]),
        "cpu_ms_per_cycle_gunicorn": per_cycle(cpu1[1] - cpu0[1]),
        "cpu_ms_per_cycle_postgres": per_cycle(cpu1[2] - cpu0[2]),
        "client_cpu_share": round((cpu1[0] - cpu0[0]) / elapsed / (os.cpu_count() or 1), 3),
        # what the machine's cores would sustain at these CPU costs if nothing else ran on them (an estimate)
        "cpu_bound_cycles_per_s": round((os.cpu_count() or 1) * cycles / ours, 1) if ours else None,
        "machine_busy_share": round(busy, 3),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=3, help="tasks = images x campaigns")
    parser.add_argument("--samples", type=int, default=2000, help="next-task query samples")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="HTTP phase time bound")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured HTTP warm-up before it")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered cycles/s spread over the clients on a fixed schedule "
                             "(0: closed loop, no think time)")
    parser.add_argument("--max-cycles", type=int, default=1_000_000, help="HTTP phase count bound")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: deploy/gunicorn.conf.py's)")
    parser.add_argument("--worker-class",
                        help="gunicorn worker class instead of the configuration's sync (e.g. gthread)")
    parser.add_argument("--threads", type=int, help="threads per worker (gthread)")
    parser.add_argument("--no-prepared", action="store_true", help="without DJANGO_DB_PREPARED_STATEMENTS=1")
    parser.add_argument("--no-health-checks", action="store_true",
                        help="DJANGO_CONN_HEALTH_CHECKS=false (no SELECT 1 per request)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure an existing bench database (from --keep) as it is")
    parser.add_argument("--http-only", action="store_true", help="skip the in-process query latency phase")
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--database", default="aesp_bench")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    db_url = f"{server_url}/{args.database}"
    env = bench_env(db_url)
    if not args.no_prepared:
        env["DJANGO_DB_PREPARED_STATEMENTS"] = "1"  # psycopg prepares the repeated hot-path statements
    if args.no_health_checks:
        env["DJANGO_CONN_HEALTH_CHECKS"] = "false"
    if not args.reuse:
        admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}"')
        admin_sql(db_url, f'CREATE DATABASE "{args.database}"')
    try:
        if args.reuse:
            import psycopg

            with psycopg.connect(db_url, autocommit=True) as conn:
                ids = [r[0] for r in conn.execute("SELECT id FROM annotation_campaign ORDER BY id").fetchall()]
                n_images = conn.execute("SELECT count(*) FROM catalog_image").fetchone()[0]
                n_tasks = conn.execute("SELECT count(*) FROM annotation_task").fetchone()[0]
            loaded = {"campaign_ids": ids, "tasks": n_tasks, "load_s": None}
            args.images = n_images
        else:
            subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
            loaded = load(db_url, images=args.images, campaigns=args.campaigns, annotators=args.clients)
        figures = {"images": args.images, "tasks": loaded["tasks"], "load_s": loaded["load_s"],
                   "load_rows_s": loaded.get("load_rows_s"), "load_index_s": loaded.get("load_index_s")}
        if not args.http_only:
            figures.update(query_latency(env, loaded["campaign_ids"][0], args.samples))
        figures.update(
            http_cycles(env, db_url=db_url, campaign_ids=loaded["campaign_ids"], clients=args.clients,
                        seconds=args.seconds, warmup=args.warmup, max_cycles=args.max_cycles, workers=args.workers,
                        threads=args.threads, port=args.port, worker_class=args.worker_class, rate=args.rate)
        )
        figures["cpu_count"] = os.cpu_count()
        figures["prepared_statements"] = not args.no_prepared
        figures["connection_health_checks"] = not args.no_health_checks
        print(json.dumps(figures))
    finally:
        try:
            from celery import Celery

            Celery(broker=env["CELERY_BROKER_URL"]).control.purge()
        except Exception:  # noqa: BLE001  the queue is the bench's own; a failed purge is harmless
            pass
        if not (args.keep or args.reuse):
            time.sleep(0.5)
            admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
