"""Pre-scoring throughput benchmark: prints ONE JSON line of figures.

    python bench/prescore.py                 # InternVL2-1B-shaped random model, bf16 + sdpa, on the GPU
    python bench/prescore.py --tiny          # the test-size model (what a CPU machine can run)
    python bench/prescore.py --device cpu --tiny --n-images 32

(a) the reference way (one image per forward, 12 tiles, MetaVoter as two passes), (b) ours at max_tiles 12,
(c) ours at max_tiles 1, each with images/s, batch size and peak memory. Targets on an H100: (b) >= 50 images/s,
(c) >= 600 images/s, (b)/(a) >= 4. Without a GPU the 1B shape falls back to the tiny model and the output says
that the GPU figures are still open.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core.benchmark import run_prescore_benchmark  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="use the tiny test model")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--n-images", type=int, default=256, help="images for (b) and (c)")
    parser.add_argument("--reference-images", type=int, default=32, help="images for (a), the slow way")
    parser.add_argument("--batch-size", type=int, default=0, help="0 = 16 for (b), 128 for (c)")
    parser.add_argument("--num-workers", type=int, default=8, help="decoding workers for (b) and (c)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    figures = run_prescore_benchmark(tiny=args.tiny, device=args.device, n_images=args.n_images,
                                     batch_size=args.batch_size, reference_images=args.reference_images,
                                     num_workers=args.num_workers)
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
