"""A campaign over small solid-colour images, for the browser tests of the annotate page."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from aesplatform.annotation import services
from aesplatform.catalog.models import ImageStatus
from tests import factories


def solid_jpeg(color) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (640, 480), color).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def rating_campaign(annotator, *, images=3, mode="expert"):
    ids = []
    for k in range(images):
        image = factories.ImageFactory(status=ImageStatus.APPROVED)
        default_storage.save(image.file.name, ContentFile(solid_jpeg((40 * k, 90, 160))))
        ids.append(image.id)
    return services.campaign_create(
        name="Portraits", mode=mode, created_by=factories.curator(), image_ids=ids, redundancy=1,
        annotators=[annotator], state="active", instructions="Rate the person, not the photo.",
    )
