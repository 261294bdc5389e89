"""Benchmark of task distribution: the next-task query at scale, and next-task + submit cycles through gunicorn.

    .venv/bin/python bench/taskfetch.py                       # 1,000,000 images, 3,000,000 tasks, 50 clients
    .venv/bin/python bench/taskfetch.py --images 20000 --campaigns 3 --seconds 10   # smaller, quicker

It creates its own PostgreSQL database (default `aesp_bench`, on the server of $BENCH_PG_URL or
postgres://postgres@127.0.0.1:5432), migrates it, bulk-loads images and tasks with generate_series (3 campaigns
over the same images: 3 tasks per image), measures, and drops the database at the end (--keep keeps it).
Everything stays on loopback. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
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


def load(db_url: str, *, images: int, campaigns: int, annotators: int) -> dict:
    import psycopg

    t0 = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
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
            INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
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
                       VALUES (now(), now(), %s, 'overall', 3, 0, false, '', 'active', 'random', 900, %s) RETURNING id""",
                    (f"bench {c}", creator),
                ).fetchone()[0]
            )
        for cid in campaign_ids:
            conn.execute(
                "INSERT INTO annotation_campaign_annotators (campaign_id, user_id) "
                "SELECT %s, id FROM auth_user WHERE username LIKE 'bench%%'",
                (cid,),
            )
            conn.execute(
                """INSERT INTO annotation_task (campaign_id, image_id, is_gold, priority, state, submitted_count, active_lease_count)
                   SELECT %s, id, false, random(), 'open', 0, 0 FROM catalog_image""",
                (cid,),
            )
        conn.execute("VACUUM ANALYZE")
        tasks = conn.execute("SELECT count(*) FROM annotation_task").fetchone()[0]
    return {"load_s": round(time.monotonic() - t0, 1), "campaign_ids": campaign_ids, "tasks": tasks}


def query_latency(env: dict, campaign_id: int, samples: int) -> dict:
    """p50/p99 of the next-task SELECT ... FOR UPDATE SKIP LOCKED (and of the whole lease service), in-process."""
    code = f"""
import json, time, random, django
django.setup()
from django.db import connection, transaction
from django.contrib.auth import get_user_model
from aesplatform.annotation import services
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
        a = services.task_lease_next(campaign=campaign, annotator=user, held=[-1, -2])
        lease_ms.append((time.perf_counter() - t) * 1000)
        transaction.savepoint_rollback(sid)
    if sql is None:
        from django.db.models import Exists, F, OuterRef
        from aesplatform.annotation.models import Assignment, Task
        qs = (Task.objects.select_for_update(skip_locked=True, of=("self",))
              .filter(campaign=campaign, state="open").alias(load=F("submitted_count") + F("active_lease_count"))
              .filter(load__lt=campaign.redundancy)
              .filter(~Exists(Assignment.objects.filter(task=OuterRef("pk"), annotator=user)))
              .order_by("-priority", "id").only("id")[:1])
        with transaction.atomic():
            sql, params = qs.query.sql_with_params()
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


def http_cycles(env: dict, *, campaign_ids, clients: int, seconds: float, max_cycles: int, workers: int, port: int) -> dict:
    server = subprocess.Popen(
        [PY, "-m", "gunicorn", "aesplatform.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", "gthread",
         "--threads", "8", "--backlog", "256", "--log-level", "warning"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health/")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.3)
        import hashlib

        tokens = [hashlib.md5(f"bench{i}".encode()).hexdigest() for i in range(1, clients + 1)]
        lock = threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []
        count = [0]
        stop_at = time.monotonic() + seconds

        def client(index: int):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Authorization": f"Token {tokens[index]}", "Content-Type": "application/json"}
            campaign = campaign_ids[index % len(campaign_ids)]
            while time.monotonic() < stop_at:
                with lock:
                    if count[0] >= max_cycles:
                        return
                    count[0] += 1
                t = time.perf_counter()
                try:
                    conn.request("POST", f"/api/campaigns/{campaign}/next-task/", body=b"{}", headers=headers)
                    r = conn.getresponse()
                    body = r.read()
                    if r.status != 200:
                        with lock:
                            errors.append(f"next {r.status} {body[:120]!r}")
                        continue
                    assignment = json.loads(body)["id"]
                    payload = json.dumps({"scores": {"comprehensive": 0.5}, "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1000})
                    conn.request("POST", f"/api/assignments/{assignment}/submit/", body=payload, headers=headers)
                    r = conn.getresponse()
                    body = r.read()
                    if r.status != 201:
                        with lock:
                            errors.append(f"submit {r.status} {body[:120]!r}")
                        continue
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    continue
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - t0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "http_clients": clients,
        "http_seconds": round(elapsed, 1),
        "cycles": len(latencies),
        "cycles_per_s": round(len(latencies) / elapsed, 1),
        "cycle_p50_ms": round(pct(latencies, 50) or 0, 1),
        "cycle_p99_ms": round(pct(latencies, 99) or 0, 1),
        "errors": len(errors),
        "error_samples": errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=3, help="tasks = images x campaigns")
    parser.add_argument("--samples", type=int, default=2000, help="next-task query samples")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="HTTP phase time bound")
    parser.add_argument("--max-cycles", type=int, default=100_000, help="HTTP phase count bound")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--database", default="aesp_bench")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    db_url = f"{server_url}/{args.database}"
    env = {
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
    admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}"')
    admin_sql(db_url, f'CREATE DATABASE "{args.database}"')
    try:
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
        loaded = load(db_url, images=args.images, campaigns=args.campaigns, annotators=args.clients)
        figures = {"images": args.images, "tasks": loaded["tasks"], "load_s": loaded["load_s"]}
        figures.update(query_latency(env, loaded["campaign_ids"][0], args.samples))
        figures.update(
            http_cycles(env, campaign_ids=loaded["campaign_ids"], clients=args.clients, seconds=args.seconds,
                        max_cycles=args.max_cycles, workers=args.workers, port=args.port)
        )
        figures["cpu_count"] = os.cpu_count()
        print(json.dumps(figures))
    finally:
        try:
            from celery import Celery

            Celery(broker=env["CELERY_BROKER_URL"]).control.purge()
        except Exception:  # noqa: BLE001  the queue is the bench's own; a failed purge is harmless
            pass
        if not args.keep:
            time.sleep(0.5)
            admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
