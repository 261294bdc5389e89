"""Import benchmark: a folder of generated 1024x768 JPEGs through the real import service path.

file -> read once -> full decode check -> sha256 + phash -> thumbnail -> files stored -> Image rows, run by
`import_job_run` in this process (with its process pool) against the database the environment gives; by default
a fresh SQLite database and media dir in a temporary folder (DJANGO_ENV=development, AESP_VAR_DIR=<tmp>).

    .venv/bin/python bench/import.py                 # 2,000 images
    .venv/bin/python bench/import.py --count 10000   # more
    DATABASE_URL=postgres://... .venv/bin/python bench/import.py

Prints one JSON line: images_per_s, count, peak RSS (MB) of this process and of the pool's children, RSS at half
of the import vs at its end (flat memory: they should be close), CPU ms per image and the load average (a busy
machine lowers images/s, not the CPU cost).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generate(folder: Path, count: int, *, seed: int) -> int:
    """Photo-like JPEGs (smooth gradients, shapes, sensor-like noise), each distinct, quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    height, width = 768, 1024
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    noise = rng.normal(0, 6, size=(height, width, 3)).astype(np.float32)
    total = 0
    for index in range(count):
        a, b, c = rng.uniform(0, 1, 3)
        base = np.stack(
            [120 + 100 * np.sin(3 * x * (1 + a) + y * 2) * a, 90 + 120 * y * b + 30 * np.cos(5 * x * c),
             60 + 150 * x * y * c + 20 * b], axis=-1,
        )
        pixels = base + np.roll(noise, index * 7, axis=1)
        top, left = int(rng.integers(0, height - 200)), int(rng.integers(0, width - 200))
        pixels[top:top + 200, left:left + 160] = rng.uniform(0, 255, 3)  # a "figure"
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        (folder / f"bench_{index:06d}.jpg").write_bytes(buffer.getvalue())
        total += buffer.tell()
    return total


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU of this process, and of its finished children (the pool has exited when this is read)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--processes", type=int, default=None, help="pool size (default: the CPUs available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--images", type=Path, default=None,
                        help="reuse a folder of generated JPEGs (from --keep) instead of generating new ones")
    parser.add_argument("--profile", action="store_true", help="cProfile the main process; top functions to stderr")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="aesp-bench-import-"))
    os.environ.setdefault("DJANGO_ENV", "development")
    os.environ.setdefault("AESP_VAR_DIR", str(workdir / "var"))
    os.environ.setdefault("AESP_IMPORT_ROOTS",
                          str(args.images.resolve().parent if args.images else workdir / "incoming"))
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aesplatform.settings")
    for path in (ROOT, ROOT / "platform"):
        sys.path.insert(0, str(path))

    import django

    django.setup()
    logging.getLogger("aesplatform").setLevel(logging.WARNING)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from aesplatform.catalog.models import Image, ImportJob
    from aesplatform.catalog.services import import_job_create, import_job_run

    call_command("migrate", verbosity=0, interactive=False)
    started = time.perf_counter()
    if args.images:
        folder = args.images.resolve()
        files = sorted(folder.glob("*.jpg"))
        args.count = len(files)
        data_bytes = sum(f.stat().st_size for f in files)
    else:
        folder = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0]) / f"bench-{args.count}"
        folder.mkdir(parents=True, exist_ok=True)
        data_bytes = _generate(folder, args.count, seed=args.seed)
    generate_s = time.perf_counter() - started

    user, _ = get_user_model().objects.get_or_create(username="bench-import")
    job = import_job_create(created_by=user, kind="folder", path=str(folder), enqueue=False)

    # RSS at half vs at the end, sampled by a thread watching the job's progress in the database.
    half_rss: list[float] = []
    done = threading.Event()

    def watch() -> None:
        from django.db import connection

        try:
            while not done.wait(0.2):
                processed = ImportJob.objects.filter(pk=job.pk).values_list("processed", flat=True).first() or 0
                if processed >= args.count // 2:
                    half_rss.append(_rss_mb())
                    return
        finally:
            connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        job = profiler.runcall(import_job_run, job_id=job.pk, processes=args.processes)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    else:
        job = import_job_run(job_id=job.pk, processes=args.processes)
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join(timeout=5)
    end_rss = _rss_mb()
    cpu_after = _cpu_seconds()
    cpu_main, cpu_pool = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
    load_average = os.getloadavg()[0]

    imported = Image.objects.filter(import_job=job).count()
    if job.state != "succeeded" or imported != args.count:
        raise SystemExit(f"bench import failed: state={job.state} imported={imported} "
                         f"errors={job.error_count} {job.error}")
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({
        "bench": "import",
        "count": args.count,
        "images_per_s": round(args.count / elapsed, 1),
        "seconds": round(elapsed, 2),
        "mean_file_kb": round(data_bytes / args.count / 1024, 1),
        "processes": args.processes if args.processes is not None else len(os.sched_getaffinity(0)),
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "peak_rss_mb": round(self_peak, 1),
        "peak_rss_children_mb": round(children_peak, 1),
        "rss_half_mb": round(half_rss[0], 1) if half_rss else None,
        "rss_end_mb": round(end_rss, 1),
        "generate_s": round(generate_s, 1),
        # CPU time per image does not depend on what else the machine runs; with the load average it tells
        # whether a low images/s came from the import or from a busy machine.
        "cpu_ms_per_image": round((cpu_main + cpu_pool) / args.count * 1000, 2),
        "cpu_ms_per_image_main": round(cpu_main / args.count * 1000, 2),
        "cpu_ms_per_image_pool": round(cpu_pool / args.count * 1000, 2),
        "load_average_1m": round(load_average, 2),
        "cpus": os.cpu_count(),
    }))
    if args.keep:
        print(f"kept {workdir}; images in {folder}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
