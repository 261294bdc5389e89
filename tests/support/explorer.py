"""An image with something of everything the explorer shows, built through the services where they exist: a
near-duplicate group, a filter run's signals (random CLIP weights), a curator's decision, ratings of several
annotators in an expert campaign with their consensus, pre-scores of two models (one without an LM head)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
from django.utils import timezone

from aesplatform.annotation import services as annotation_services
from aesplatform.annotation.models import Campaign
from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.curation.models import CuratorDecision, FilterResult, FilterRun, ReviewBatch
from aesplatform.modeling.models import ModelVersion, Prescore
from model_core.standard import DIMENSIONS
from tests import factories
from tests.support.datasets import make_image


@dataclass
class ExploredImage:
    image: Image
    duplicates: list[Image]
    campaign: Campaign
    annotators: list
    run: FilterRun
    full_model: ModelVersion
    released_model: ModelVersion
    curator: object
    scores: dict = field(default_factory=dict)  # annotator username -> the 12 scores they gave


def annotator_scores(k: int) -> dict[str, float]:
    return {d.key: round(0.05 + 0.07 * ((d.index + 3 * k) % 13), 2) for d in DIMENSIONS}


def rate(campaign: Campaign, annotators: list, scores_of=annotator_scores) -> dict:
    given = {}
    for k, user in enumerate(annotators):
        lease = annotation_services.task_lease_next(campaign=campaign, annotator=user)
        scores = scores_of(k)
        annotation_services.annotation_submit(assignment_id=lease.id, annotator=user, scores=scores,
                                              idempotency_key=uuid.uuid4())
        given[user.get_username()] = scores
    return given


def explored_image(*, raters: int = 2, seed: int = 500) -> ExploredImage:
    curator = factories.curator()
    image = make_image(seed, source="explorer-set", group=seed, status=ImageStatus.APPROVED)
    duplicates = [make_image(seed + 1 + i, source="explorer-set", group=seed, status=ImageStatus.REJECTED)
                  for i in range(2)]
    annotators = [factories.annotator(first_name=f"Rater{k}", last_name="Test") for k in range(raters)]
    campaign = annotation_services.campaign_create(
        name="Explorer campaign", mode="expert", created_by=curator, image_ids=[image.pk], redundancy=raters,
        annotators=annotators, state="active", gold_ratio=0.0,
    )
    scores = rate(campaign, annotators)
    annotation_services.consensus_update_for_campaign(campaign=campaign)

    run = FilterRun.objects.create(name="Explorer run", created_by=curator, clip_checkpoint="", random_weights=True,
                                   total=3, processed=3)
    batch = ReviewBatch.objects.create(run=run, number=1)
    now = timezone.now()
    rng = np.random.default_rng(seed)
    for target in [image, *duplicates]:
        FilterResult.objects.create(
            run=run, image=target, scored_at=now, clip_probabilities={"person_subject": 0.91, "photograph": 0.77},
            embedding=rng.normal(size=16).astype(np.float16).tobytes(), face_count=1, largest_face_fraction=0.12,
            blur_variance=321.5, exposure={"under": 0.01, "over": 0.02}, proposed_decision="keep",
            reasons=["all checks passed"], uncertainty=0.4, batch=batch,
            near_duplicate_of=None if target == image else image,
        )
    CuratorDecision.objects.create(batch=batch, image=image, decision="approve", decided_by=curator)

    promoted = not ModelVersion.objects.filter(promoted=True).exists()
    full = ModelVersion.objects.create(name=f"full-model-{seed}", checkpoint_path="/nonexistent/full",
                                       promoted=promoted)
    released = ModelVersion.objects.create(name=f"released-model-{seed}", checkpoint_path="/nonexistent/released")
    Prescore.objects.create(image=image, model_version=full, lm_score=0.61, regression_score=0.58,
                            metavoter_score=0.6, uncertainty=0.2, **{d.key: 0.5 for d in DIMENSIONS})
    Prescore.objects.create(image=image, model_version=released, lm_score=None, regression_score=None,
                            metavoter_score=0.55, uncertainty=None, **{d.key: 0.4 for d in DIMENSIONS})
    return ExploredImage(image=image, duplicates=duplicates, campaign=campaign, annotators=annotators, run=run,
                         full_model=full, released_model=released, curator=curator, scores=scores)
