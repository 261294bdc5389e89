"""Filtering throughput: JPEG files -> decode + signals + CLIP -> FilterResult row values, and the model alone.

Prints one JSON line. Runs the Django-free engine (aesplatform.curation.engine) exactly as the worker does:
DataLoader decode workers (Pillow draft mode on CPU; nvjpeg batch decode on CUDA), bf16 on CUDA / fp32 on CPU,
then builds the values the worker bulk-writes (float16 embedding bytes, signals) and proposes + groups duplicates
(faiss) over the whole set. The database write itself is not included (it is one bulk UPDATE per batch).

    python bench/filter.py                                   # CPU: tiny random-init CLIP, 256 generated JPEGs
    python bench/filter.py --model ViT-B-32 --images 128     # a real architecture, random weights
    python bench/filter.py --model ViT-L-14 --checkpoint /models/vit-l-14.safetensors --images 20000  # on a GPU
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from aesplatform.curation.engine import dedup, pipeline, prompts, proposals  # noqa: E402
from aesplatform.curation.engine.clip import TINY_MODEL, ClipScorer  # noqa: E402


def make_jpegs(folder: Path, count: int, width: int, height: int) -> list[str]:
    """Distinct photo-like JPEGs (smooth gradients + texture + noise), written once and reused."""
    rng = np.random.default_rng(0)
    paths = []
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        path = folder / f"{i:06d}.jpg"
        paths.append(str(path))
        if path.exists():
            continue
        a, b, c = rng.uniform(0.002, 0.02, 3)
        base = np.stack([128 + 100 * np.sin(a * x + i), 128 + 100 * np.cos(b * y + i),
                         128 + 90 * np.sin(c * (x + y))], -1)
        image = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=88)
        path.write_bytes(buffer.getvalue())
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the generated JPEGs")
    parser.add_argument("--folder", default="", help="reuse/keep the JPEGs here (default: a temporary folder)")
    parser.add_argument("--model", default="", help=f"open_clip model (default: ViT-L-14 on CUDA, {TINY_MODEL} on CPU)")
    parser.add_argument("--checkpoint", default="", help="local checkpoint path (default: random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=0, help="default: 256 on CUDA, 64 on CPU")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader decode workers")
    parser.add_argument("--model-batches", type=int, default=10)
    args = parser.parse_args()

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model = args.model or ("ViT-L-14" if device == "cuda" else TINY_MODEL)
    batch_size = args.batch_size or (256 if device == "cuda" else 64)
    width, height = (int(v) for v in args.size.lower().split("x"))
    tmp = None if args.folder else tempfile.TemporaryDirectory(prefix="aesp-bench-filter-")
    folder = Path(args.folder or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    paths = make_jpegs(folder, args.images, width, height)

    scorer = ClipScorer(model_name=model, checkpoint=args.checkpoint, prompt_set=prompts.default_prompt_set(),
                        device=device)
    model_rate = pipeline.model_only_throughput(scorer, batch_size=batch_size, batches=args.model_batches)

    items = [pipeline.ImageItem(i, p) for i, p in enumerate(paths)]
    warm = items[: min(len(items), batch_size)]
    for _ in pipeline.pipeline_run(warm, scorer, batch_size=batch_size, num_workers=args.workers):
        pass  # warm-up: worker start-up, cudnn/nvjpeg initialisation
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    rows, embeddings, digests = [], [], []
    for batch in pipeline.pipeline_run(items, scorer, batch_size=batch_size, num_workers=args.workers):
        for s in batch:  # the values the worker writes, one bulk UPDATE per batch
            embedding = None if s.embedding is None else np.asarray(s.embedding, np.float16).tobytes()
            rows.append({"id": s.key, "error": s.error, "clip": s.probabilities, "embedding": embedding,
                         "face_count": s.face_count, "largest_face_fraction": s.largest_face_fraction,
                         "blur_variance": s.blur_variance, "exposure": s.exposure, "digest": s.digest})
            if s.embedding is not None:
                embeddings.append(s.embedding)
                digests.append(s.digest)
    pipeline_s = time.perf_counter() - start
    t0 = time.perf_counter()
    groups = dedup.duplicate_groups(np.stack(embeddings), digests, threshold=0.95,
                                    rank=[(0, -i) for i in range(len(digests))])
    thresholds = proposals.default_thresholds()
    for row in rows:
        proposals.proposal_compute({**row, "width": width, "height": height}, thresholds)
    propose_s = time.perf_counter() - t0
    errors = sum(1 for r in rows if r["error"])
    print(json.dumps({
        "bench": "filter",
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "model": model, "weights": args.checkpoint or "random init",
        "precision": str(scorer.dtype).replace("torch.", ""),
        "clip_input": scorer.image_size, "images": len(rows), "errors": errors, "jpeg_size": f"{width}x{height}",
        "batch_size": batch_size, "decode_workers": args.workers,
        "pipeline_images_per_s": round(len(rows) / pipeline_s, 1),
        "model_images_per_s": round(model_rate, 1),
        "propose_and_dedup_s": round(propose_s, 3),
        "duplicate_groups": sum(g != i for i, g in enumerate(groups.group_of)),
        "torch": torch.__version__,
    }))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
