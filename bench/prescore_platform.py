"""Platform pre-scoring throughput vs model_core's: prints ONE JSON line of figures.

    python bench/prescore_platform.py                 # tiny model on this machine's device, 512 images
    python bench/prescore_platform.py --n-images 2048 --batch-size 128

Same model (bench/prescore.py's: the tiny random-init shape, no LoRA, saved and registered as a model version),
same images, same max_tiles (1) and batch size, same device. (1) model_core: `score_images` on the file paths, the
path bench/prescore.py's (c) figure measures; (2) the platform: `prescore_run_execute` over the same images as
catalog rows (reads the rows, resolves storage paths, scores in the same batches, bulk-inserts Prescore rows with
ignore_conflicts, updates progress). Runs in a throwaway SQLite database under a temporary AESP_VAR_DIR, so it
touches no real data. The ratio platform / model_core is what issue 8 asks to be >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements of each; best is kept")
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="aesp-bench-prescore-")
    os.environ.update(DJANGO_ENV="development", AESP_VAR_DIR=var, DJANGO_MEDIA_ROOT=str(Path(var) / "media"),
                      DATABASE_URL=f"sqlite:///{var}/bench.sqlite3", DJANGO_SETTINGS_MODULE="aesplatform.settings")
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    import hashlib
    import io

    import numpy as np
    from PIL import Image as PILImage

    from aesplatform.catalog.models import Image
    from aesplatform.modeling import services
    from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun
    from model_core.model import BackboneConfig, ModelConfig, TinyBackboneConfig, build_model, save_model
    from model_core.scoring import score_images

    shape = TinyBackboneConfig()
    config = ModelConfig(backbone=BackboneConfig(source="tiny", tiny=shape), lora=None)
    model = build_model(config, device=args.device, precision="auto")
    checkpoint = Path(var) / "model"
    save_model(model, checkpoint)
    size = (shape.tile_size * 2, shape.tile_size * 3 // 2)  # bench/prescore.py's tiny image size

    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username="bench")
    rng = np.random.default_rng(0)
    rows, paths = [], []
    for i in range(args.n_images):
        buffer = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        key = default_storage.save(f"images/{sha[:2]}/{sha}.jpg", ContentFile(data))
        rows.append(Image(sha256=sha, phash=f"{i:016x}", width=size[0], height=size[1], format="JPEG", mode="RGB",
                          file_size=len(data), original_name=f"{i}.jpg", source="bench", file=key,
                          thumbnail=key, status="approved"))
        paths.append(default_storage.path(key))
    Image.objects.bulk_create(rows)
    image_ids = list(Image.objects.order_by("id").values_list("id", flat=True))

    score_images(model, paths[:4], max_tiles=1, batch_size=4)  # warm-up
    best_core, best_platform = 0.0, 0.0
    for repeat in range(args.repeats):
        start = time.perf_counter()
        score_images(model, paths, max_tiles=1, batch_size=args.batch_size, num_workers=0)
        best_core = max(best_core, args.n_images / (time.perf_counter() - start))

        version = ModelVersion.objects.create(name=f"bench-{repeat}", checkpoint_path=str(checkpoint))
        services.SCORERS.put(version.pk, model)  # the same model object: loading is not what is measured
        run = PrescoreRun.objects.create(model_version=version, image_ids=image_ids, total=len(image_ids),
                                         batch_size=args.batch_size, created_by=user)
        start = time.perf_counter()
        run = services.prescore_run_execute(run_id=run.pk, device=args.device)
        elapsed = time.perf_counter() - start
        assert run.state == "succeeded" and Prescore.objects.filter(model_version=version).count() == args.n_images
        best_platform = max(best_platform, args.n_images / elapsed)

    import torch

    figures = {
        "bench": "prescore_platform", "model": "tiny (bench/prescore.py's shape, no LoRA)",
        "device": str(model.device) + ("" if model.device.type == "cuda" else f" ({torch.get_num_threads()} threads)"),
        "n_images": args.n_images, "batch_size": args.batch_size, "max_tiles": 1, "image_size": list(size),
        "model_core_images_per_s": round(best_core, 1), "platform_images_per_s": round(best_platform, 1),
        "platform_over_model_core": round(best_platform / best_core, 3), "repeats": args.repeats,
    }
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
