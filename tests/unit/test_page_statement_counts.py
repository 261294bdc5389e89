"""No page or API read runs more SQL statements when there is more data (no N+1, no per-row lookups).

Every route of the URL conf that answers GET (enumerated by tests/support/urls.py, so a page added later is
checked without being listed here) is requested, signed in, with the same ids, once over a small world (3 of each
kind of row: images, campaigns, annotations, annotators, filter results, dataset items, pre-scores, imports...) and
once after the world has grown tenfold; the statement counts (django's CaptureQueriesContext) must be equal.
Each URL is requested once before it is counted (first-use caches, counts stored once for campaigns made before
they were stored).
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import ImageStatus, ImportItem, ImportJob
from aesplatform.curation.models import FilterResult, FilterRun, ReviewBatch
from aesplatform.datasets.models import DatasetItem, DatasetVersion, Export
from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun, TrainingJob
from model_core.standard import DIMENSIONS
from tests import factories
from tests.support.urls import fill, get_routes

pytestmark = pytest.mark.django_db


def _grow(world: dict, n: int) -> None:
    """Add `n` of each kind of row (and n // 3 + 1 campaigns rated by the annotators), through the services where
    the rows have rules (campaigns, leases, annotations, the worker's quality update)."""
    curator = world["curator"]
    images = [factories.ImageFactory(status=ImageStatus.APPROVED) for _ in range(n)]
    annotators = [factories.annotator() for _ in range(n)]
    world["annotators"] += annotators
    raters = [world["annotator"], world["curator"], *world["annotators"][:1]]
    for k in range(n // 3 + 1):
        campaign = annotation_services.campaign_create(
            name=f"c{k}", mode="expert" if k % 2 == 0 else "overall", created_by=curator, redundancy=3,
            image_ids=[i.pk for i in images], annotators=[*raters, *annotators], state="active",
        )
        world.setdefault("campaign", campaign)
        for user in raters:
            held = []
            for k in range(n):
                lease = annotation_services.task_lease_next(campaign=campaign, annotator=user, held=held)
                held.append(lease.pk)
                if user == world["annotator"] and k == n - 1:
                    break  # the annotator keeps their last lease of each campaign live
                scores = {d.key: 0.5 for d in DIMENSIONS} if campaign.mode == "expert" else {"comprehensive": 0.5}
                annotation_services.annotation_submit(assignment_id=lease.pk, annotator=user, scores=scores,
                                                      idempotency_key=uuid.uuid4())
        annotation_services.consensus_update_for_campaign(campaign=campaign)  # what the worker runs after submits
    job = ImportJob.objects.create(kind="folder", source_name="x", created_by=curator, total=n, processed=n)
    ImportItem.objects.bulk_create([ImportItem(job=job, name=f"{i.pk}.jpg", outcome="imported", image=i)
                                    for i in images])
    run = FilterRun.objects.create(name="run", created_by=curator, total=n, processed=n)
    batch = ReviewBatch.objects.create(run=run, number=1)
    FilterResult.objects.bulk_create([FilterResult(run=run, image=i, batch=batch if k % 2 else None)
                                      for k, i in enumerate(images)])
    version = DatasetVersion.objects.create(name=f"v{len(world['versions'])}", version=1, created_by=curator)
    world["versions"].append(version)
    DatasetItem.objects.bulk_create([DatasetItem(version=version, image=i, split="train", is_expert=False,
                                                 source="tests", rating_count=1, comprehensive=0.5) for i in images])
    Export.objects.create(version=version, format="humanbeauty", options_digest=uuid.uuid4().hex * 2,
                          created_by=curator)
    training = TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator)
    model = ModelVersion.objects.create(name=f"m{uuid.uuid4().hex[:8]}", checkpoint_path="/nonexistent",
                                        training_job=training, dataset_version=version)
    PrescoreRun.objects.create(model_version=model, created_by=curator)
    Prescore.objects.bulk_create([Prescore(image=i, model_version=model, metavoter_score=0.5, comprehensive=0.5)
                                  for i in images])
    world.setdefault("ids", {
        "campaign": world["campaign"].pk, "image": images[0].pk, "import_job": job.pk, "filter_run": run.pk,
        "review_batch": batch.pk, "dataset_version": version.pk, "export": Export.objects.get(version=version).pk,
        "training_job": training.pk, "model_version": model.pk,
        "prescore_run": PrescoreRun.objects.get(model_version=model).pk,
    })


@pytest.fixture
def world(db):
    return {"curator": factories.curator(), "annotator": factories.annotator(), "admin": factories.admin(),
            "annotators": [], "versions": []}


def _counts(world: dict, principal: str) -> dict[str, tuple[int, int]]:
    """url -> (status, statements) of every GET route for `principal`."""
    from aesplatform.annotation.models import Annotation, Assignment

    ids = dict(world["ids"])
    # the annotator's own lease and annotation (a curator may read them too)
    ids["assignment"] = (Assignment.objects.filter(annotator=world["annotator"], state="leased").order_by("id")
                         .values_list("id", flat=True).first())
    ids["annotation"] = (Annotation.objects.filter(annotator=world["annotator"]).order_by("id")
                         .values_list("id", flat=True).first())
    client = Client(raise_request_exception=False)
    client.force_login(world[principal])
    counted = {}
    for route, _name in get_routes():
        url = fill(route, {k: v or 0 for k, v in ids.items()})
        client.get(url)  # first use: caches, counts stored once
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
            if getattr(response, "streaming", False):
                b"".join(response.streaming_content)
        counted[url] = (response.status_code, len(queries))
    return counted


@pytest.mark.parametrize("principal", ["curator", "annotator"])
def test_no_route_runs_more_statements_with_more_data(world, principal):
    _grow(world, 3)
    small = _counts(world, principal)
    _grow(world, 27)
    large = _counts(world, principal)
    assert set(small) == set(large)
    reached = [url for url, (status, _) in small.items() if status == 200]
    assert len(reached) > (40 if principal == "curator" else 5), reached
    grew = {url: (small[url], large[url]) for url in small if small[url] != large[url]}
    assert not grew, "statements (status, count) at 3 and at 30 of each row:\n" + "\n".join(
        f"{url}: {a} -> {b}" for url, (a, b) in sorted(grew.items()))
