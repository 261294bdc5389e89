"""Real image files for the curation tests: generated scenes and scikit-image's photos, stored like imports."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from tests import factories

TINY_MODEL = "AESP-Tiny-CLIP"


def scene(seed: int, width: int = 360, height: int = 280) -> np.ndarray:
    """A landscape-like picture (sky, hills, textured ground): sharp, no face, clearly different per seed."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    sky = (top * (1 - y) + bottom * y) * np.ones((1, width, 1))
    x = np.linspace(0, 1, width)[None, :]
    horizon = 0.35 + 0.3 * rng.random() + 0.1 * np.sin(x * rng.uniform(3, 20) + rng.uniform(0, 6))
    ground = (np.linspace(0, 1, height)[:, None] > horizon)[..., None]
    frequency = rng.uniform(10, 60)
    stripes = 60 * np.sin(frequency * (x * np.cos(seed) + np.linspace(0, 1, height)[:, None] * np.sin(seed)))[..., None]
    grass = rng.integers(0, 200, 3) + stripes
    image = np.where(ground, grass, sky) + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(array).save(out, "JPEG", quality=quality)
    return out.getvalue()


def stored_image(data: bytes, *, source: str = "tests", **kwargs):
    """An Image row with its file and thumbnail really in default storage (as the import leaves them)."""
    sha = hashlib.sha256(data).hexdigest()
    with PILImage.open(io.BytesIO(data)) as img:
        width, height = img.size
        thumb = img.convert("RGB")
        thumb.thumbnail((128, 128))
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG")
    key, thumb_key = f"images/{sha[:2]}/{sha}.jpg", f"thumbs/{sha[:2]}/{sha}.jpg"
    for name, content in ((key, data), (thumb_key, buffer.getvalue())):
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(content))
    return factories.ImageFactory(
        sha256=sha, width=width, height=height, file_size=len(data), file=key, thumbnail=thumb_key, source=source,
        **kwargs,
    )


def stored_scenes(count: int, *, start: int = 0, **kwargs) -> list:
    return [stored_image(jpeg_bytes(scene(start + i)), **kwargs) for i in range(count)]


def tiny_run_kwargs(**overrides) -> dict:
    """A run of the tiny model with random weights (no checkpoint): its CLIP signals are not used."""
    return {"clip_model_name": TINY_MODEL, "clip_checkpoint": "", **overrides}


_TINY_CHECKPOINT: list[str] = []


def tiny_checkpoint() -> str:
    """A checkpoint file of the tiny model (a fixed-seed init, saved once per test process): a run over it has
    local weights, so its CLIP signals (embeddings, near duplicates) are used like a real model's."""
    if not _TINY_CHECKPOINT:
        import os
        import tempfile

        import open_clip
        import torch

        import aesplatform.curation.engine.clip  # noqa: F401 - registers the tiny model's config

        torch.manual_seed(0)
        path = os.path.join(tempfile.mkdtemp(prefix="aesp-tiny-clip-"), "tiny.pt")
        torch.save(open_clip.create_model(TINY_MODEL).state_dict(), path)
        _TINY_CHECKPOINT.append(path)
    return _TINY_CHECKPOINT[0]


def tiny_weights_run_kwargs(**overrides) -> dict:
    """A run of the tiny model with local weights (tiny_checkpoint)."""
    return {"clip_model_name": TINY_MODEL, "clip_checkpoint": tiny_checkpoint(), **overrides}
