"""Data behind the dashboards' charts: a campaign whose annotators disagree on one dimension (negative
Krippendorff's α, computed by the real recomputation) and agree on the others, and a model with an evaluation
report that has a negative per-dimension correlation."""

from __future__ import annotations

import uuid

from aesplatform.annotation import services
from aesplatform.catalog.models import ImageStatus
from model_core.standard import DIMENSION_KEYS, DIMENSIONS
from tests import factories

DISAGREED = DIMENSIONS[0]  # Facial Brightness: the two annotators rate it in opposite orders
SCORES = (0.2, 0.5, 0.8)


def campaign_with_disagreement(*, curator=None, name: str = "Charts"):
    """Expert campaign, 3 images, 2 annotators: on DISAGREED the second rates 1 - the first's score (α < 0), on
    every other dimension both give the same score (α = 1). Agreement stored by consensus_update_for_campaign."""
    first, second = factories.annotator(), factories.annotator()
    ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in SCORES]
    campaign = services.campaign_create(
        name=name, mode="expert", created_by=curator or factories.curator(), image_ids=ids, redundancy=2,
        annotators=[first, second], state="active",
    )
    for _ in SCORES:
        for user in (first, second):
            lease = services.task_lease_next(campaign=campaign, annotator=user)
            base = SCORES[ids.index(lease.task.image_id)]
            scores = {k: base for k in DIMENSION_KEYS}
            if user == second:
                scores[DISAGREED.key] = round(1.0 - base, 3)
            services.annotation_submit(assignment_id=lease.id, annotator=user, scores=scores,
                                       idempotency_key=uuid.uuid4())
    services.consensus_update_for_campaign(campaign=campaign)
    return campaign


REPORT = {
    "overall": {h: {"plcc": 0.8 + i / 100, "srcc": 0.7, "krcc": 0.5, "rmse": 0.1, "mae": 0.08, "n": 20}
                for i, h in enumerate(("lm", "regression", "expert", "metavoter"))},
    "dimensions": {"facial_brightness": {"plcc": -0.25, "srcc": -0.2, "n": 10},
                   "comprehensive": {"plcc": 0.75, "srcc": 0.7, "n": 10}},
}
