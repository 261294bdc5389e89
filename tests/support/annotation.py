"""An active campaign over approved images, for annotation tests."""

from __future__ import annotations

from aesplatform.annotation import services
from aesplatform.catalog.models import ImageStatus
from tests import factories


def campaign_for(users, *, images=4, redundancy=2, mode="overall", show_prescores=False):
    ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(images)]
    return services.campaign_create(
        name="hot", mode=mode, created_by=factories.curator(), image_ids=ids, redundancy=redundancy,
        annotators=list(users), state="active", show_prescores=show_prescores,
    )
