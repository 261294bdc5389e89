"""Benchmark of every page and every API GET at deployment size, per role, through gunicorn and a real session.

    .venv/bin/python bench/pages.py                 # builds (or reuses) aesp_bench_pages, measures, keeps it
    .venv/bin/python bench/pages.py --rebuild       # builds it again
    .venv/bin/python bench/pages.py --only /campaigns/ --reps 5

The data (built once, kept, reused while its data version matches; about 10 minutes on 2 cores): 1,000,000 images
and 3 large campaigns over all of them (3,000,000 tasks; bench/taskfetch.py's loader), one of them expert, with
150,000 annotations (50,000 per campaign: 16,667 images rated by 3 of 50 annotators, spread over 14 days), their
consensus and agreement rows; 27 small campaigns; a finished filter run over every image (1,000,000 results, 100
review batches) and a second one; 2 dataset versions of 50,000 items (one frozen) with an export; a training job,
a model version and its pre-scores of every image (1,000,000); an import of 1,000,000 items. Rows are written by
SQL (INSERT ... SELECT generate_series), never through the ORM.

The routes are the URL conf's, enumerated (tests/support/urls.py: every route answering GET except the admin,
the schema and sign-in/out), their ids filled with the big expert campaign, the first filter run and so on. Each
role (annotator, curator, admin) signs in through the login form (a real session cookie) and requests each route
it may see (a 403 is recorded as refused) `--reps` times after one unmeasured request, one at a time. gunicorn runs
with the shipped configuration and AESP_QUERY_STATS_HEADER=true (common/querystats.py), so that each response
says how many SQL statements it ran and their time. Prints one JSON line: per route and role, p50/p99 in ms, the
statements and SQL time of the last request, and which routes miss the targets (pages p99 < 300 ms, API lists
p99 < 100 ms). The database is kept (drop it with --drop).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from taskfetch import PY, REPO, admin_sql, bench_env, gunicorn_start, gunicorn_stop, load, pct  # noqa: E402

DATA_VERSION = 1  # bump when the built data changes: a kept database of another version is built again
PASSWORD = "bench-pages-password"
ROLES = ("annotator", "curator", "admin")
PAGE_TARGET_MS, LIST_TARGET_MS = 300.0, 100.0
REQUEST_TIMEOUT_S = 130  # gunicorn's worker timeout (deploy/gunicorn.conf.py: 120 s) ends a longer request anyway
RATED_IMAGES = 16_667  # x 3 annotators x 3 campaigns = 150,000 annotations
SMALL_CAMPAIGNS = 27
REVIEW_BATCHES, REVIEW_BATCH_SIZE = 100, 200
DIMS = ["facial_brightness", "facial_feature_clarity", "facial_skin_tone", "facial_structure",
        "facial_contour_clarity", "facial_aesthetic", "outfit", "body_shape", "looks", "environment",
        "general_appearance_aesthetic", "comprehensive"]  # model_core.standard's order (checked in build())


def _marker(db_url: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute("SELECT version FROM bench_pages_marker").fetchone()
            return row[0] if row else None
    except psycopg.Error:
        return None


def _extras(db_url: str, campaign_ids: list[int], images: int) -> None:
    """Everything beyond images and tasks, in SQL."""
    import psycopg

    scores = ", ".join(DIMS)
    expert_values = ", ".join("random()" for _ in DIMS)
    overall_values = ", ".join("NULL" for _ in DIMS[:-1]) + ", random()"
    rated = min(RATED_IMAGES, images // 4)  # smaller for a quick try with --images
    items = min(3 * rated, images)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        creator = conn.execute("SELECT id FROM auth_user WHERE username = 'bench0'").fetchone()[0]
        annotators = [r[0] for r in conn.execute(
            "SELECT id FROM auth_user WHERE username LIKE 'bench%%' AND username <> 'bench0' ORDER BY id").fetchall()]
        conn.execute("UPDATE annotation_campaign SET mode = 'expert', name = 'bench expert' WHERE id = %s",
                     (campaign_ids[0],))
        # 50,000 annotations per big campaign: the first RATED_IMAGES images, 3 annotators each, done
        for n, campaign in enumerate(campaign_ids):
            expert = n == 0
            conn.execute(
                f"""
                WITH picked AS (
                    SELECT t.id AS task_id, a.k, (%(ann)s::int[])[1 + (t.image_id + a.k * 7) %% 50] AS annotator_id,
                           now() - random() * interval '14 days' AS at
                    FROM annotation_task t, generate_series(0, 2) AS a(k)
                    WHERE t.campaign_id = %(c)s AND t.image_id <= %(n)s
                ), leased AS (
                    INSERT INTO annotation_assignment (task_id, annotator_id, state, leased_at, leased_until,
                                                       finished_at)
                    SELECT task_id, annotator_id, 'submitted', at - interval '1 minute', at + interval '14 minutes',
                           at FROM picked
                    RETURNING id, task_id, annotator_id, finished_at
                )
                INSERT INTO annotation_annotation ({scores}, is_expert, idempotency_key, time_spent_ms, ui_version,
                                                   created_at, annotator_id, supersedes_id, assignment_id, task_id,
                                                   campaign_id)
                SELECT {expert_values if expert else overall_values}, %(expert)s, gen_random_uuid(),
                       (2000 + random() * 20000)::int, 'bench', finished_at, annotator_id, NULL, id, task_id,
                       %(c)s
                FROM leased
                """,
                {"ann": annotators, "c": campaign, "n": rated, "expert": expert},
            )
            conn.execute("UPDATE annotation_task SET submitted_count = 3, state = 'done' "
                         "WHERE campaign_id = %s AND image_id <= %s", (campaign, rated))
            # a few live leases, skips and flags beyond the rated images
            conn.execute(
                """INSERT INTO annotation_assignment (task_id, annotator_id, state, leased_at, leased_until,
                                                      finished_at)
                   SELECT t.id, (%(ann)s::int[])[1 + t.image_id %% 50],
                          (ARRAY['leased', 'skipped', 'flagged', 'expired'])[1 + t.image_id %% 4],
                          now() - interval '1 minute', now() + interval '14 minutes', NULL
                   FROM annotation_task t WHERE t.campaign_id = %(c)s AND t.image_id > %(n)s
                        AND t.image_id <= %(n)s + 400""",
                {"ann": annotators, "c": campaign, "n": rated},
            )
            dims = range(12) if expert else [11]
            conn.execute(
                """INSERT INTO annotation_consensus (image_id, dimension, origin, campaign_id, label_source, method,
                       score, count, std, ci_low, ci_high, rejected_annotators, updated_at)
                   SELECT i, d, 'campaign', %s, '', 'bt500', 0.25 + random() / 2, 3, 0.1, 0.1, 0.9, 0, now()
                   FROM generate_series(1, %s::bigint) AS i, unnest(%s::int[]) AS d""",
                (campaign, rated, list(dims)),
            )
            conn.execute(
                """INSERT INTO annotation_agreement (campaign_id, dimension, krippendorff_alpha, icc, items,
                       annotations, computed_at)
                   SELECT %s, d, 0.4 + random() / 3, 0.5, %s, %s, now() FROM unnest(%s::int[]) AS d""",
                (campaign, rated, 3 * rated, list(dims)),
            )
        # small campaigns (a campaign list of more than one page), 200 tasks each, some closed or draft
        for k in range(SMALL_CAMPAIGNS):
            small = conn.execute(
                """INSERT INTO annotation_campaign (created_at, updated_at, name, mode, redundancy, gold_ratio,
                   show_prescores, instructions, state, task_order, lease_seconds, created_by_id)
                   VALUES (now(), now(), %s, %s, 3, 0, false, '', %s, 'random', 900, %s) RETURNING id""",
                (f"small {k}", "expert" if k % 2 else "overall", ("active", "closed", "draft")[k % 3], creator),
            ).fetchone()[0]
            conn.execute("INSERT INTO annotation_campaign_annotators (campaign_id, user_id) "
                         "SELECT %s, unnest(%s::int[])", (small, annotators[:10]))
            conn.execute("INSERT INTO annotation_task (campaign_id, image_id, is_gold, priority, state, "
                         "submitted_count, active_lease_count) SELECT %s, i, false, random(), 'open', 0, 0 "
                         "FROM generate_series(%s::bigint, %s::bigint) AS i", (small, 1 + k * 200, 200 + k * 200))
        # an import of every image
        job = conn.execute(
            """INSERT INTO catalog_importjob (created_at, updated_at, kind, state, source_path, source_name, total,
               processed, imported_count, duplicate_count, error_count, labels_count, error, started_at, finished_at,
               created_by_id, attempts, cancel_requested)
               VALUES (now(), now(), 'folder', 'succeeded', '/bench', 'bench', %s, %s, %s, 0, 0, 0, '', now(), now(),
                       %s, 1, false) RETURNING id""",
            (images, images, images, creator),
        ).fetchone()[0]
        conn.execute("INSERT INTO catalog_importitem (name, staged_file, outcome, message, label, image_id, job_id) "
                     "SELECT 'b' || i || '.jpg', '', 'imported', '', NULL, i, %s "
                     "FROM generate_series(1, %s::bigint) AS i",
                     (job, images))
        # filter runs: a finished one over every image with its review batches, and a small running one
        run = conn.execute(
            """INSERT INTO curation_filterrun (created_at, updated_at, name, clip_model_name, clip_checkpoint,
               prompt_set, thresholds, batch_size, review_batch_size, state, total, processed, error, started_at,
               finished_at, created_by_id, attempts, cancel_requested)
               VALUES (now(), now(), 'bench run', 'ViT-L-14', '', '{}', '{}', 256, %s, 'succeeded', %s, %s, '',
                       now(), now(), %s, 1, false) RETURNING id""",
            (REVIEW_BATCH_SIZE, images, images, creator),
        ).fetchone()[0]
        conn.execute(
            """INSERT INTO curation_reviewbatch (created_at, updated_at, number, state, decided_at, decided_by_id,
                                               run_id)
               SELECT now(), now(), n, CASE WHEN n <= 10 THEN 'decided' ELSE 'pending' END,
                      CASE WHEN n <= 10 THEN now() END, CASE WHEN n <= 10 THEN %s END, %s
               FROM generate_series(1, %s::bigint) AS n""",
            (creator, run, REVIEW_BATCHES),
        )
        conn.execute(
            """INSERT INTO curation_filterresult (scored_at, error, clip_probabilities, embedding, face_count,
                   largest_face_fraction, blur_variance, exposure, is_exact_duplicate, proposed_decision, reasons,
                   uncertainty, image_id, near_duplicate_of_id, run_id, batch_id, pixel_digest)
               SELECT now(), '', '{"person": 0.9}', NULL, 1, 0.2, 150.0, '{}', false,
                      CASE WHEN i %% 10 = 0 THEN 'reject' ELSE 'keep' END, '[]', random(), i, NULL, %(run)s,
                      CASE WHEN i <= %(batched)s THEN b.id END, md5(i::text)
               FROM generate_series(1, %(n)s::bigint) AS i
               LEFT JOIN curation_reviewbatch b ON b.run_id = %(run)s AND b.number = 1 + (i - 1) / %(size)s
                    AND i <= %(batched)s""",
            {"run": run, "n": images, "batched": REVIEW_BATCHES * REVIEW_BATCH_SIZE, "size": REVIEW_BATCH_SIZE},
        )
        conn.execute(
            """INSERT INTO curation_filterrun (created_at, updated_at, name, clip_model_name, clip_checkpoint,
               prompt_set, thresholds, batch_size, review_batch_size, state, total, processed, error, started_at,
               created_by_id, attempts, cancel_requested)
               VALUES (now(), now(), 'bench run 2', 'ViT-L-14', '', '{}', '{}', 256, 200, 'running', 1000, 10, '',
                       now(), %s, 1, false)""",
            (creator,),
        )
        # dataset versions (a draft and a frozen one) of the rated images, an export
        versions = []
        for v, state in ((1, "draft"), (2, "frozen")):
            version = conn.execute(
                """INSERT INTO datasets_datasetversion (created_at, updated_at, name, version, state, description,
                   include_imported_labels, consensus_method, min_ratings, split_seed, test_ratio, code_version,
                   counts, frozen_at, created_by_id, kind)
                   VALUES (now(), now(), 'bench', %s, 'draft', '', false, 'bt500', 1, 0, 0.1, 'bench',
                           %s, NULL, %s, 'mixed') RETURNING id""",
                (v, json.dumps({"total": items}), creator),
            ).fetchone()[0]
            conn.execute(
                f"""INSERT INTO datasets_datasetitem ({scores}, split, is_expert, source, rating_count, image_id,
                        version_id)
                    SELECT {expert_values}, CASE WHEN i %% 10 = 0 THEN 'test' ELSE 'train' END, true, 'bench', 3, i,
                           %s FROM generate_series(1, %s::bigint) AS i""",
                (version, items),
            )
            conn.execute("INSERT INTO datasets_datasetversion_campaigns (datasetversion_id, campaign_id) "
                         "SELECT %s, unnest(%s::bigint[])", (version, campaign_ids))
            if state == "frozen":
                conn.execute("UPDATE datasets_datasetversion SET state = 'frozen', frozen_at = now() WHERE id = %s",
                             (version,))
            versions.append(version)
        conn.execute(
            """INSERT INTO datasets_export (created_at, updated_at, format, options, options_digest, state, total,
               processed, path, archive_path, archive_size, manifest, error, finished_at, created_by_id, version_id,
               attempts, cancel_requested)
               VALUES (now(), now(), 'humanbeauty', '{}', %s, 'succeeded', %s, %s, '', '', NULL, '{}', '', now(),
                       %s, %s, 1, false)""",
            ("0" * 64, items, items, creator, versions[1]),
        )
        # a training job, its model version, pre-scores of every image
        job = conn.execute(
            """INSERT INTO modeling_trainingjob (created_at, updated_at, preset, config, state, cancel_requested,
               step, total_steps, loss, eta_seconds, metrics, loss_curve, log, output_dir, error, started_at,
               finished_at, created_by_id, dataset_version_id, attempts)
               VALUES (now(), now(), 'tiny-cpu', '{}', 'succeeded', false, 100, 100, 0.1, NULL, '{}', '[]', '', '',
                       '', now(), now(), %s, %s, 1) RETURNING id""",
            (creator, versions[1]),
        ).fetchone()[0]
        model = conn.execute(
            """INSERT INTO modeling_modelversion (created_at, updated_at, name, backend, checkpoint_path, config,
               metrics, report_dir, promoted, promoted_at, dataset_version_id, promoted_by_id, training_job_id)
               VALUES (now(), now(), 'bench model', 'model_core', '/nonexistent/bench', '{}', '{}', '', true, now(),
                       %s, %s, %s) RETURNING id""",
            (versions[1], creator, job),
        ).fetchone()[0]
        conn.execute(
            """INSERT INTO modeling_prescorerun (created_at, updated_at, image_ids, state, total, processed,
               max_tiles, batch_size, error, finished_at, created_by_id, model_version_id, attempts,
               cancel_requested, started_at)
               VALUES (now(), now(), '[]', 'succeeded', %s, %s, 12, 32, '', now(), %s, %s, 1, false, now())""",
            (images, images, creator, model),
        )
        conn.execute(
            f"""INSERT INTO modeling_prescore ({scores}, lm_score, regression_score, metavoter_score, uncertainty,
                    created_at, image_id, model_version_id)
                SELECT {expert_values}, random(), random(), random(), random(), now(), i, %s
                FROM generate_series(1, %s::bigint) AS i""",
            (model, images),
        )
        conn.execute("VACUUM ANALYZE")


def _users(env: dict) -> None:
    """The signed-in principals: bench1 (an annotator of every campaign, from the loader), a curator, an admin."""
    code = f"""
import django
django.setup()
from django.contrib.auth.models import Group, User
u = User.objects.get(username="bench1"); u.set_password({PASSWORD!r}); u.save()
for name, group, superuser in (("pages_curator", "curator", False), ("pages_admin", "admin", True)):
    user, _ = User.objects.get_or_create(username=name, defaults={{"is_superuser": superuser, "is_staff": superuser}})
    user.set_password({PASSWORD!r}); user.save(); user.groups.add(Group.objects.get(name=group))
"""
    subprocess.run([PY, "-c", code], env=env, cwd=REPO, check=True)


def build(db_url: str, database: str, env: dict, *, images: int, rebuild: bool) -> dict:
    """Build the bench database unless a kept one of this data version is there. Returns the build's figures."""
    from model_core.standard import DIMENSIONS

    assert [d.key for d in DIMENSIONS] == DIMS, "bench/pages.py's DIMS no longer follow model_core/standard.py"
    if not rebuild and _marker(db_url) == DATA_VERSION:
        # the code's migrations since the build (new tables, columns) applied to the kept data
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
        return {"reused": True}
    admin_sql(db_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin_sql(db_url, f'CREATE DATABASE "{database}"')
    t0 = time.monotonic()
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
    loaded = load(db_url, images=images, campaigns=3, annotators=50)
    _extras(db_url, loaded["campaign_ids"], images)
    _users(env)
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_pages_marker (version int NOT NULL)")
        conn.execute("INSERT INTO bench_pages_marker VALUES (%s)", (DATA_VERSION,))
    return {"reused": False, "build_s": round(time.monotonic() - t0, 1)}


def sizes(db_url: str) -> dict:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "catalog_image", "annotation_task", "annotation_annotation", "annotation_campaign",
            "curation_filterresult", "datasets_datasetitem", "modeling_prescore")}


def routes(env: dict) -> list[dict]:
    """The URL conf's GET routes with their sample ids filled in (a Django process enumerates them)."""
    code = """
import json, django
django.setup()
from django.db.models import Min
from aesplatform.annotation.models import Annotation, Assignment, Campaign
from aesplatform.catalog.models import ImportJob
from aesplatform.curation.models import FilterRun, ReviewBatch
from aesplatform.datasets.models import DatasetVersion, Export
from aesplatform.modeling.models import ModelVersion, PrescoreRun, TrainingJob
from tests.support.urls import fill, get_routes
campaign = Campaign.objects.filter(mode="expert", name="bench expert").values_list("id", flat=True).get()
ids = {
    "campaign": campaign,
    "assignment": Assignment.objects.filter(task__campaign_id=campaign, annotator__username="bench1")
                  .order_by("id").values_list("id", flat=True).first(),
    "annotation": Annotation.objects.filter(task__campaign_id=campaign, annotator__username="bench1")
                  .order_by("id").values_list("id", flat=True).first(),
    "image": 1,
    "import_job": ImportJob.objects.aggregate(m=Min("id"))["m"],
    "filter_run": FilterRun.objects.aggregate(m=Min("id"))["m"],
    "review_batch": ReviewBatch.objects.aggregate(m=Min("id"))["m"],
    "dataset_version": DatasetVersion.objects.aggregate(m=Min("id"))["m"],
    "export": Export.objects.aggregate(m=Min("id"))["m"],
    "training_job": TrainingJob.objects.aggregate(m=Min("id"))["m"],
    "model_version": ModelVersion.objects.aggregate(m=Min("id"))["m"],
    "prescore_run": PrescoreRun.objects.aggregate(m=Min("id"))["m"],
}
print(json.dumps([{"route": r, "name": n, "url": fill(r, ids)} for r, n in get_routes()]))
"""
    out = subprocess.run([PY, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


class Session:
    """A browser's session: cookies kept, signed in through the login form."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.timeout = REQUEST_TIMEOUT_S
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)

    def request(self, method: str, path: str, body: str = "", headers: dict | None = None):
        head = {"Host": "127.0.0.1", "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                **(headers or {})}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body or None, headers=head)
                response = self.conn.getresponse()
                data = response.read()
                break
            except TimeoutError:
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                raise
            except (http.client.HTTPException, OSError):
                self.conn.close()  # sync workers close the connection after each response
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt:
                    raise
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response, data

    def sign_in(self, username: str) -> None:
        _, page = self.request("GET", "/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        body = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token})
        response, _ = self.request("POST", "/login/", body, {
            "Content-Type": "application/x-www-form-urlencoded", "Referer": f"http://127.0.0.1:{self.port}/login/"})
        assert response.status == 302 and "sessionid" in self.cookies, f"{username} could not sign in"


def measure(port: int, found: list[dict], *, reps: int, budget_s: float, only: str | None) -> list[dict]:
    rows = []
    for role, username in zip(ROLES, ("bench1", "pages_curator", "pages_admin")):
        session = Session(port)
        session.sign_in(username)
        for entry in found:
            url = entry["url"]
            if only and only not in url:
                continue
            api = url.startswith("/api/")
            row = {"role": role, "name": entry["name"], "url": url}
            t = time.perf_counter()
            try:
                response, data = session.request("GET", url)  # unmeasured: the worker's first use of the view
            except (TimeoutError, http.client.HTTPException, OSError) as exc:
                row.update(status="failed", error=f"{type(exc).__name__} after {time.perf_counter() - t:.0f} s")
                rows.append(row)
                print(f"{role:9} failed   {row['error']} {url}", file=sys.stderr)
                continue
            first_s = time.perf_counter() - t
            row["status"] = response.status
            if response.status >= 500:  # e.g. gunicorn's worker timeout (120 s) ended it
                row.update(status="failed", error=f"HTTP {response.status} after {first_s:.0f} s")
                rows.append(row)
                print(f"{role:9} failed   {row['error']} {url}", file=sys.stderr)
                continue
            if response.status in (401, 403, 404):
                rows.append(row)
                continue
            streamed = "X-Query-Count" not in response.headers
            if first_s > budget_s:  # maybe one-time work (figures stored on first view): once more, to see
                t = time.perf_counter()
                response, data = session.request("GET", url)
                first_s = time.perf_counter() - t
            # a route slower than the budget is measured by that one request only
            times, spent = ([first_s * 1000], first_s) if first_s > budget_s else ([], 0.0)
            while len(times) < reps and (spent < budget_s or len(times) < 3) and first_s <= budget_s:
                t = time.perf_counter()
                response, data = session.request("GET", url)
                times.append((time.perf_counter() - t) * 1000)
                spent += times[-1] / 1000
            is_list = api and data[:1] == b"{" and b'"results"' in data[:4000]
            kind = "export" if streamed else ("api-list" if is_list else "api" if api else "page")
            target = {"page": PAGE_TARGET_MS, "api-list": LIST_TARGET_MS}.get(kind)
            p99 = pct(times, 99)
            row.update(kind=kind, n=len(times), p50_ms=round(pct(times, 50), 1), p99_ms=round(p99, 1),
                       statements=None if streamed else int(response.headers["X-Query-Count"]),
                       sql_ms=None if streamed else float(response.headers["X-Query-Ms"]), bytes=len(data),
                       over_target=bool(target and p99 > target))
            rows.append(row)
            print(f"{role:9} {kind:8} {row['p50_ms']:9.1f} {row['p99_ms']:9.1f} {row['statements']!s:>4} "
                  f"{row['sql_ms']!s:>8} {url}", file=sys.stderr)
    return rows


def compare(before_path: str, after_path: str) -> str:
    """A Markdown table of two runs' figures (curator and annotator; the admin's pages are the curator's)."""
    def load_rows(path):
        data = json.loads(Path(path).read_text())
        return {(r["role"], r["url"]): r for r in data["results"]}, data

    def cell(r):
        if r is None:
            return "–"
        if r["status"] == "failed":
            return f"failed: {r['error']}"
        if r["status"] >= 500:
            return f"HTTP {r['status']} after {r['p50_ms'] / 1000:.0f} s"
        sql = "" if r["statements"] is None else f", {r['statements']} st., {r['sql_ms']:.0f} ms SQL"
        return f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms{sql}"

    before, _ = load_rows(before_path)
    after, _ = load_rows(after_path)
    lines = ["| role | route | kind | before: p50 / p99, statements, SQL time | after |", "|---|---|---|---|---|"]
    for key in sorted(set(before) | set(after), key=lambda k: (ROLES.index(k[0]), k[1])):
        if key[0] == "admin":
            continue
        r = after.get(key) or before.get(key)
        lines.append(f"| {key[0]} | `{key[1]}` | {r.get('kind', '')} | {cell(before.get(key))} "
                     f"| {cell(after.get(key))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20, help="measured requests per route and role")
    parser.add_argument("--budget", type=float, default=8.0,
                        help="seconds per route and role after which fewer requests are measured (at least 3)")
    parser.add_argument("--only", help="only the routes whose URL contains this")
    parser.add_argument("--database", default="aesp_bench_pages")
    parser.add_argument("--rebuild", action="store_true", help="build the data again even if a kept one is there")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    parser.add_argument("--port", type=int, default=18441)
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print a Markdown table of two runs' JSON output, and nothing else")
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    db_url = f"{server_url}/{args.database}"
    env = bench_env(db_url)
    figures = build(db_url, args.database, env, images=args.images, rebuild=args.rebuild)
    figures.update(rows=sizes(db_url))
    if args.build_only:
        print(json.dumps(figures))
        return
    found = routes(env)
    server = gunicorn_start({**env, "AESP_QUERY_STATS_HEADER": "true", "AESP_LOGIN_LOCKOUT": "false"},
                            port=args.port)
    try:
        results = measure(args.port, found, reps=args.reps, budget_s=args.budget, only=args.only)
    finally:
        gunicorn_stop(server)
        if args.drop:
            admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    measured = [r for r in results if "p99_ms" in r or r["status"] == "failed"]
    figures.update(
        cpu_count=os.cpu_count(), loadavg=[round(x, 2) for x in os.getloadavg()],
        targets={"page_p99_ms": PAGE_TARGET_MS, "api_list_p99_ms": LIST_TARGET_MS},
        over_target=sorted({f"{r['role']} {r['url']}" for r in measured
                            if r["status"] == "failed" or r["over_target"]}),
        refused=sorted({f"{r['role']} {r['url']} {r['status']}" for r in results
                        if "p99_ms" not in r and r["status"] != "failed"}),
        failed=sorted({f"{r['role']} {r['url']}: {r['error']}" for r in results if r["status"] == "failed"}),
        results=measured,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
