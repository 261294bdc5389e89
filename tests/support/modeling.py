"""Synthetic labelled images, frozen dataset versions and a signed-in page client, for modeling tests."""

from __future__ import annotations

import io

import numpy as np
from django.test import Client
from django.utils import timezone

from aesplatform.common.models import DIMENSION_FIELDS
from tests import factories
from tests.support.scenes import stored_image


def synthetic_images(count: int, *, seed: int = 0, size=(64, 64), **kwargs) -> list[tuple]:
    """(Image row, 12 scores) for `count` synthetic images stored in default storage."""
    from model_core.synthetic import generate_image

    out = []
    for i in range(count):
        image, scores = generate_image(rng=np.random.default_rng([seed, 7, i]), size=size)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        out.append((stored_image(buffer.getvalue(), source="synthetic", format="PNG", **kwargs), scores))
    return out


def frozen_version(images: list[tuple], *, test_every: int = 5, user=None, name: str = "synthetic"):
    """A frozen DatasetVersion holding the images (every `test_every`-th in test; even ones expert)."""
    from aesplatform.datasets.models import DatasetItem, DatasetVersion

    user = user or factories.curator()
    version = DatasetVersion.objects.create(name=name, version=DatasetVersion.objects.filter(name=name).count() + 1,
                                            created_by=user)
    items = []
    for i, (image, scores) in enumerate(images):
        expert = i % 2 == 0
        values = dict(zip(DIMENSION_FIELDS, scores if expert else [None] * 11 + [scores[-1]]))
        items.append(DatasetItem(version=version, image=image, split="test" if i % test_every == 0 else "train",
                                 is_expert=expert, source="synthetic", rating_count=1, **values))
    DatasetItem.objects.bulk_create(items)
    version.state, version.frozen_at = "frozen", timezone.now()
    version.counts = {"total": len(items)}
    version.save()
    return version


def draft_version(user=None):
    from aesplatform.datasets.models import DatasetVersion

    return DatasetVersion.objects.create(name="draft", version=1, created_by=user or factories.curator())


FAST = {"max_steps": 2, "batch_size": 4, "checkpoint_every": 1, "log_every": 1, "metavoter_steps": 20}


def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client
