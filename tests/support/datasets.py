"""Catalog images with real stored files and their labels (imported or campaign consensus), for dataset tests."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from aesplatform.annotation.models import Consensus, ConsensusOrigin
from model_core.standard import NUM_DIMENSIONS, OVERALL_INDEX
from tests import factories


def image_bytes(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def make_image(seed: int, *, source: str = "FFHQ", group: int | None = None, status: str = "imported"):
    """A catalog image with a real (tiny, decodable) PNG in the default storage, content-addressed."""
    data = image_bytes(seed)
    sha = hashlib.sha256(data).hexdigest()
    key = f"images/{sha[:2]}/{sha}.png"
    if not default_storage.exists(key):
        default_storage.save(key, ContentFile(data))
    return factories.ImageFactory(sha256=sha, file=key, format="PNG", source=source, near_duplicate_group=group,
                                  status=status, file_size=len(data), width=24, height=24)


def expert_scores(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(x), 4) for x in rng.uniform(0.0, 1.0, NUM_DIMENSIONS)]


def label_imported(image, *, overall: float | None = None, expert: list[float] | None = None, source: str = "FFHQ"):
    scores = dict(enumerate(expert)) if expert is not None else {OVERALL_INDEX: overall}
    Consensus.objects.bulk_create([
        Consensus(image=image, dimension=d, origin=ConsensusOrigin.IMPORTED, label_source=source, method="imported",
                  score=s, count=1)
        for d, s in scores.items()
    ])


def label_campaign(image, campaign, *, scores: dict[int, float], count: int = 3, method: str | None = None):
    """Consensus rows of the campaign, made by `method` (by default the campaign's own)."""
    Consensus.objects.bulk_create([
        Consensus(image=image, dimension=d, origin=ConsensusOrigin.CAMPAIGN, campaign=campaign,
                  method=method or campaign.consensus_method,
                  score=s, count=count)
        for d, s in scores.items()
    ])


def labelled_set(n_overall: int = 12, n_expert: int = 8, *, groups: dict[int, int] | None = None, seed0: int = 0):
    """n_overall overall-only images (two sources) and n_expert expert images, with imported labels.
    `groups` maps an image number to a near-duplicate group id."""
    groups = groups or {}
    images = []
    for i in range(n_overall + n_expert):
        expert = i >= n_overall
        source = "expert-set" if expert else ("FFHQ" if i % 2 else "CelebA")
        image = make_image(seed0 + i, source=source, group=groups.get(i))
        if expert:
            label_imported(image, expert=expert_scores(seed0 + i), source=source)
        else:
            label_imported(image, overall=round(((i * 37) % 100) / 100, 2), source=source)
        images.append(image)
    return images


def archive_bytes(export) -> bytes:
    """The download archive of a finished export, as streamed (built from its files)."""
    from aesplatform.datasets import services, writers

    root, layout = services.export_archive(export)
    return b"".join(writers.iter_archive(root, layout))
