"""The API as schemathesis sees it, for the schema tests (tests/integration/test_api_schemathesis.py and
tests/unit/test_api_schema_conformance.py): drf-spectacular's OpenAPI document loaded in-process, Django's WSGI
handler to call, and `seed`: one of each object the API names by id, created through the services where a service
exists, so that generated ids hit real rows."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.authtoken.models import Token

from aesplatform.annotation import services as annotation_services
from aesplatform.annotation.models import CampaignMode, CampaignState
from aesplatform.catalog.models import ImageStatus, ImportItem, ImportJob
from aesplatform.common.models import DIMENSION_FIELDS, JobState
from aesplatform.curation.models import FilterResult, FilterRun, ReviewBatch
from aesplatform.datasets import services as dataset_services
from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun, TrainingJob
from tests import factories
from tests.support.datasets import expert_scores, label_campaign, labelled_set
from tests.support.modeling import draft_version, frozen_version


def openapi_document() -> dict:
    """The schema `/api/schema/` serves, as JSON (no request: the public, complete document)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


@contextlib.contextmanager
def wsgi_app():
    """Django's WSGI handler, with database connections kept open between requests: the test's transaction lives
    on them (Django's test client does the same)."""
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def seed(tmp_path: Path) -> dict:
    """{"tokens": role -> API token, "targets": role -> object name -> id (the annotation and the live
    assignment are the role's own; everything else is shared), "body": role -> request body field -> real id(s)}."""
    annotator, curator, admin = factories.annotator(), factories.curator(), factories.admin()
    tokens = {role: Token.objects.create(user=user).key
              for role, user in (("annotator", annotator), ("curator", curator), ("admin", admin))}

    images = labelled_set(3, 3)
    for image in images:
        image.status = ImageStatus.APPROVED
        image.save(update_fields=["status"])
        default_storage.save(image.thumbnail.name, ContentFile(image.file.read()))  # the thumbnail an import makes

    job = ImportJob.objects.create(kind="folder", state=JobState.SUCCEEDED, created_by=curator,
                                   source_path=str(tmp_path / "incoming"), source_name="tests", total=1, processed=1,
                                   imported_count=1)
    ImportItem.objects.create(job=job, name="a.png", outcome="imported", image=images[0])

    run = FilterRun.objects.create(name="run", clip_model_name="AESP-Tiny-CLIP", state=JobState.SUCCEEDED,
                                   created_by=curator, total=2, processed=2)
    batch = ReviewBatch.objects.create(run=run, number=1)
    for image in images[:2]:
        FilterResult.objects.create(run=run, image=image, scored_at=timezone.now(), proposed_decision="keep",
                                    batch=batch, face_count=1, blur_variance=120.0, uncertainty=0.2)

    campaign = annotation_services.campaign_create(
        name="fuzz", mode=CampaignMode.EXPERT, created_by=curator, image_ids=[i.pk for i in images],
        redundancy=2, annotators=[annotator, curator, admin], state=CampaignState.ACTIVE, seed=1,
    )
    # each role's own annotation and live lease (what it may submit, skip, flag or correct)
    own: dict[str, dict[str, int]] = {}
    for i, (role, user) in enumerate((("annotator", annotator), ("curator", curator), ("admin", admin))):
        done = annotation_services.task_lease_next(campaign=campaign, annotator=user)
        annotation, _ = annotation_services.annotation_submit(
            assignment_id=done.pk, annotator=user, scores=dict(zip(DIMENSION_FIELDS, expert_scores(i))),
            idempotency_key=uuid.uuid4(),
        )
        live = annotation_services.task_lease_next(campaign=campaign, annotator=user)
        own[role] = {"annotation": annotation.pk, "assignment": live.pk}
    label_campaign(images[0], campaign, scores={11: 0.5})

    frozen = frozen_version([(image, expert_scores(i)) for i, image in enumerate(images)], user=curator)
    draft_version(user=curator)
    export, _ = dataset_services.export_create(version=frozen, format="humanbeauty", options={}, created_by=curator,
                                               enqueue=False)
    dataset_services.export_run(export_id=export.pk)

    training = TrainingJob.objects.create(dataset_version=frozen, preset="tiny-cpu", created_by=curator,
                                          state=JobState.SUCCEEDED, step=2, total_steps=2)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    model = ModelVersion.objects.create(name="fuzz-model", checkpoint_path=str(checkpoint), training_job=training,
                                        dataset_version=frozen, metrics={"overall": {"plcc": 0.5}})
    # the promoted one (pre-scoring needs one; its promoted_by is a name, the other's null)
    ModelVersion.objects.create(name="fuzz-promoted", checkpoint_path=str(checkpoint), dataset_version=frozen,
                                promoted=True, promoted_at=timezone.now(), promoted_by=curator)
    prescore_run = PrescoreRun.objects.create(model_version=model, image_ids=[images[0].pk], created_by=curator,
                                              state=JobState.SUCCEEDED, total=1, processed=1)
    Prescore.objects.create(image=images[0], model_version=model, lm_score=0.5, regression_score=0.5,
                            metavoter_score=0.5, **dict(zip(DIMENSION_FIELDS, expert_scores(2))))

    shared = {
        "campaign": campaign.pk, "dataset_version": frozen.pk, "export": export.pk, "filter_run": run.pk,
        "image": images[0].pk, "import_job": job.pk, "model_version": model.pk, "prescore_run": prescore_run.pk,
        "review_batch": batch.pk, "training_job": training.pk,
    }
    # ids that request bodies name (the fuzz test puts them in place of drawn ids, see `body_ids`)
    body = {
        "version": frozen.pk, "dataset_version": frozen.pk, "model_version": model.pk, "training_job": training.pk,
        "import_job": job.pk, "image_ids": [images[0].pk, images[1].pk], "annotators": [annotator.pk],
        "campaigns": [campaign.pk], "decision_image": images[0].pk, "checkpoint_path": str(checkpoint),
        "clip_model_name": "AESP-Tiny-CLIP",
    }
    return {
        "tokens": tokens,
        "targets": {role: {**shared, **own[role]} for role in tokens},
        "body": {role: {**body, "held": [own[role]["assignment"]]} for role in tokens},
    }
