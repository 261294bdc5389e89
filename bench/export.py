"""Benchmark of dataset freeze + split + full export at HumanBeauty scale.

    .venv/bin/python bench/export.py                     # 58,000 overall-only + 50,000 expert images
    .venv/bin/python bench/export.py --overall 5800 --expert 5000   # smaller, quicker

It creates its own PostgreSQL database (default `aesp_export_bench`, on the server of $BENCH_PG_URL or
postgres://postgres@127.0.0.1:5432), migrates it, bulk-loads (COPY) the image rows with tiny content-addressed
files and their imported labels (one overall score, or the 12 scores), with some near-duplicate groups, then,
in a fresh process (so that its peak RSS is the measured work's alone): creates and freezes a version (label
selection, split, item COPY), and runs the full HumanBeauty export (hard-linked images, label files, manifest
with sha256 of every file; the tar's size from its layout), then a training-jsonl export. The tar is not written
by the job: it is streamed from the export's files at download time, so it is measured apart (the whole archive
streamed to nowhere, and one Range request from its middle). Drops the database and the files at the end (--keep
keeps them). Prints one JSON line of figures, with the load average of the (shared) machine and the CPU seconds
of the measuring process (independent of the load; PostgreSQL's own share is not in them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def admin_sql(base_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(base_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


def load(db_url: str, media: Path, *, overall: int, expert: int) -> dict:
    """Rows by COPY, files written directly (tiny: the bytes of a name; the export never decodes images)."""
    import psycopg

    t0 = time.monotonic()
    total = overall + expert
    n_dims = 12
    with psycopg.connect(db_url, autocommit=False) as conn:
        conn.execute("SET synchronous_commit = off")
        user_id = conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) VALUES ('!', true, 'bench', '', '', '', true, true, now()) RETURNING id"
        ).fetchone()[0]
        shas = []
        with conn.cursor().copy(
            "COPY catalog_image (id, created_at, updated_at, sha256, phash, near_duplicate_group, width, height, "
            "format, mode, file_size, original_name, source, file, thumbnail, status) FROM STDIN"
        ) as copy:
            for i in range(total):
                data = f"bench image {i}".encode()
                sha = hashlib.sha256(data).hexdigest()
                shas.append(sha)
                key = f"images/{sha[:2]}/{sha}.png"
                path = media / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                source = "expert-set" if i >= overall else ("FFHQ", "CelebA", "LAION")[i % 3]
                group = (i // 4) if i % 50 < 4 else None  # every 50th block of 4 images: a near-duplicate group
                copy.write_row((i + 1, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", sha, f"{i:016x}", group,
                                512, 512, "PNG", "RGB", len(data), f"img{i}.png", source, key, f"thumbs/{sha}.jpg",
                                "imported"))
        with conn.cursor().copy(
            "COPY annotation_consensus (image_id, dimension, origin, campaign_id, label_source, method, score, count, "
            "rejected_annotators, updated_at) FROM STDIN"
        ) as copy:
            for i in range(total):
                if i < overall:
                    source = ("FFHQ", "CelebA", "LAION")[i % 3]
                    copy.write_row((i + 1, n_dims - 1, "imported", None, source, "imported",
                                    ((i * 7919) % 1000) / 1000, 1, 0, "2026-01-01T00:00:00Z"))
                else:
                    for d in range(n_dims):
                        copy.write_row((i + 1, d, "imported", None, "expert-set", "imported",
                                        ((i * 31 + d * 17) % 1000) / 1000, 1, 0, "2026-01-01T00:00:00Z"))
        conn.execute("SELECT setval(pg_get_serial_sequence('catalog_image', 'id'), %s)", (total,))
        conn.commit()
    # Setup, not the measured work: VACUUM sets the hint bits and visibility map that rows of a live database have
    # long had (else the first reader of each page dirties it), and CHECKPOINT writes out the load's dirty pages
    # (else the freeze's commit waits behind them).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) catalog_image")
        conn.execute("VACUUM (ANALYZE) annotation_consensus")
        conn.execute("CHECKPOINT")
    return {"user_id": user_id, "load_s": round(time.monotonic() - t0, 2)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(user_id: int) -> None:
    """The measured part, in its own process: freeze (select + split + insert) and the full exports."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from aesplatform.datasets import services

    user = get_user_model().objects.get(pk=user_id)
    from aesplatform.datasets import writers

    cpu0 = _cpu()
    t0 = time.perf_counter()
    version = services.dataset_version_create(created_by=user, name="bench", split_seed=0, test_ratio=0.1)
    version = services.dataset_version_freeze(version=version)
    t1 = time.perf_counter()
    cpu1 = _cpu()
    export, _ = services.export_create(version=version, format="humanbeauty", options={}, created_by=user,
                                       enqueue=False)
    export = services.export_run(export_id=export.pk)
    t2 = time.perf_counter()
    cpu2 = _cpu()
    load_during = os.getloadavg()
    rss_after_humanbeauty = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the download (not part of the target: it runs per request, after the export)
    root, layout = services.export_archive(export)
    streamed = 0
    for chunk in writers.iter_archive(root, layout):
        streamed += len(chunk)
    t3 = time.perf_counter()
    cpu3 = _cpu()
    middle = layout.size // 2
    ranged = sum(len(c) for c in writers.iter_archive(*services.export_archive(export), start=middle,
                                                       end=middle + (1 << 20) - 1))
    t4 = time.perf_counter()
    jsonl, _ = services.export_create(version=version, format="training_jsonl", options={}, created_by=user,
                                      enqueue=False)
    jsonl = services.export_run(export_id=jsonl.pk)
    t5 = time.perf_counter()
    print(json.dumps({
        "items": version.counts["total"],
        "train": version.counts["by_split"]["train"]["total"],
        "test": version.counts["by_split"]["test"]["total"],
        "max_source_deviation": version.counts["balance"]["max_source_deviation"],
        "straddling_groups": version.counts["balance"]["near_duplicate_groups"]["straddling"],
        "freeze_split_s": round(t1 - t0, 2),
        "export_humanbeauty_s": round(t2 - t1, 2),
        "freeze_split_export_s": round(t2 - t0, 2),
        "export_training_jsonl_s": round(t5 - t4, 2),
        "freeze_split_cpu_s": round(cpu1 - cpu0, 2),  # this process only (not PostgreSQL's share)
        "export_humanbeauty_cpu_s": round(cpu2 - cpu1, 2),
        "freeze_split_export_cpu_s": round(cpu2 - cpu0, 2),
        "loadavg_during": [round(x, 2) for x in load_during],
        "archive_stream_s": round(t3 - t2, 2),  # the whole tar, built from the files as a download would
        "archive_stream_cpu_s": round(cpu3 - cpu2, 2),
        "archive_streamed_ok": streamed == layout.size == export.archive_size,
        "archive_range_1mb_from_middle_s": round(t4 - t3, 3),
        "archive_range_ok": ranged == 1 << 20,
        "export_state": [export.state, jsonl.state],
        "export_error": export.error or jsonl.error or None,
        "files": export.manifest.get("files_count"),
        "archive_mb": round((export.archive_size or 0) / 1e6, 1),
        "images_linked": export.manifest.get("images"),
        "peak_rss_mb_freeze_and_humanbeauty": round(rss_after_humanbeauty, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overall", type=int, default=58_000)
    parser.add_argument("--expert", type=int, default=50_000)
    parser.add_argument("--database", default="aesp_export_bench")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and files")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure)
        return

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    db_url = f"{server_url}/{args.database}"
    work = Path(tempfile.mkdtemp(prefix="aesp-export-bench-"))
    media = work / "media"
    env = {
        **os.environ,
        "DJANGO_ENV": "development",
        "DJANGO_DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "aesplatform.settings",
        "DATABASE_URL": db_url,
        "DJANGO_LOG_LEVEL": "WARNING",
        "AESP_VAR_DIR": str(work / "var"),
        "DJANGO_MEDIA_ROOT": str(media),
        "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)]),
    }
    admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin_sql(db_url, f'CREATE DATABASE "{args.database}"')
    try:
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
        loaded = load(db_url, media, overall=args.overall, expert=args.expert)
        load_before = os.getloadavg()
        child = subprocess.run([PY, __file__, "--measure", str(loaded["user_id"])], env=env, cwd=REPO,
                               check=True, capture_output=True, text=True)
        figures = {"images": args.overall + args.expert, "overall_only": args.overall, "expert": args.expert,
                   "database": "postgresql", "load_s": loaded["load_s"]}
        figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
        figures["cpu_count"] = os.cpu_count()
        figures["loadavg_before"] = [round(x, 2) for x in load_before]
        figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        figures["target"] = {"seconds": 10, "peak_rss_mb": 300}
        print(json.dumps(figures))
    except subprocess.CalledProcessError as exc:
        sys.stderr.write((exc.stderr or "") if isinstance(exc.stderr, str) else "")
        raise
    finally:
        if not args.keep:
            admin_sql(db_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: database {args.database}, files {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
