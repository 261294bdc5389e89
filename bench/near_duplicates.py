"""Near-duplicate search at catalogue scale: the filter run's own grouping code on synthetic embeddings.

    python bench/near_duplicates.py                         # 100,000, 300,000 and 1,000,000 embeddings, d = 768
    python bench/near_duplicates.py --sizes 1000000 --dim 512

For each size, in a fresh process (so that its peak memory is its own): random unit vectors in --clusters loose
clusters stand in for CLIP image embeddings (ViT-L-14 gives d = 768), and a share of them (--planted) get a
near duplicate (the same vector plus small noise, cosine about 0.97-0.99). `curation.engine.dedup.similar_pairs`
(faiss HNSW, M = 32, efSearch = 128, 16 neighbours, the code a filter run uses) finds the pairs at the filter's
cosine threshold (0.95). Reported per size: index build plus search time, peak resident memory of the process,
the pairs found and the recall of the planted pairs. Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))


def synthetic_embeddings(n: int, dim: int, *, clusters: int, planted: float, seed: int):
    """(n, dim) L2-normalised float32 rows and the planted (original, duplicate) row pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65_536):  # in float32 chunks: the generator's own peak stays small beside the index's
        rows = min(65_536, n - start)
        x[start : start + rows] = centres[rng.integers(0, clusters, rows)]
        x[start : start + rows] += 1.5 * rng.standard_normal((rows, dim), dtype=np.float32)
    n_planted = int(n * planted)
    originals = rng.choice(n // 2, n_planted, replace=False)
    duplicates = n // 2 + rng.choice(n - n // 2, n_planted, replace=False)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[duplicates] = x[originals] + 0.01 * rng.standard_normal((n_planted, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, set(zip(originals.tolist(), duplicates.tolist()))


def measure(n: int, args) -> dict:
    from aesplatform.curation.engine import dedup

    x, planted = synthetic_embeddings(n, args.dim, clusters=args.clusters, planted=args.planted, seed=args.seed)
    rss_before_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    pairs = dedup.similar_pairs(x, threshold=args.threshold)  # index build + search, as a filter run does
    elapsed = time.perf_counter() - started
    found = {(i, j) for i, j, _ in pairs}
    return {
        "n": n, "dim": args.dim, "build_and_search_s": round(elapsed, 1), "pairs_found": len(found),
        "planted_pairs": len(planted), "planted_recall": round(len(found & planted) / max(1, len(planted)), 4),
        "peak_rss_before_search_gb": round(rss_before_gb, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "embeddings_gb": round(x.nbytes / 2**30, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--planted", type=float, default=0.01, help="share of rows given a near duplicate")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return 0
    results = []
    for n in args.sizes:
        command = [sys.executable, __file__, "--one", str(n), "--dim", str(args.dim), "--clusters",
                   str(args.clusters), "--planted", str(args.planted), "--threshold", str(args.threshold),
                   "--seed", str(args.seed)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"bench": "near_duplicates", "threads": os.cpu_count(),
                      "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU cores, CPU only",
                      "results": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
