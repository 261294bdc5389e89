"""Task distribution under real concurrency on PostgreSQL, and the consensus update through a real worker."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from django.db import connection, connections

from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, Assignment, AssignmentState, Consensus, Task, TaskState
from aesplatform.catalog.models import Image, ImageStatus
from model_core.standard import OVERALL
from tests import factories
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ANNOTATORS = 50
IMAGES = 600
REDUNDANCY = 3


def _bulk_images(n: int) -> list[int]:
    start = Image.objects.count()
    rows = [factories.ImageFactory.build(status=ImageStatus.APPROVED) for _ in range(n)]
    for k, row in enumerate(rows):
        row.sha256 = uuid.uuid4().hex + uuid.uuid4().hex
        row.original_name = f"bulk{start + k}.jpg"
    return [i.id for i in Image.objects.bulk_create(rows)]


def test_50_annotators_redundancy_3_600_images(monkeypatch):
    assert connection.vendor == "postgresql"
    monkeypatch.setattr(services, "_queue_quality_update", lambda campaign_id: None)
    users = [factories.annotator() for _ in range(ANNOTATORS)]
    campaign = services.campaign_create(
        name="load", mode="overall", created_by=factories.curator(), image_ids=_bulk_images(IMAGES),
        redundancy=REDUNDANCY, annotators=users, state="active", seed=1,
    )
    errors: list[BaseException] = []
    barrier = threading.Barrier(ANNOTATORS)

    def annotate(user, index):
        try:
            barrier.wait()  # everyone asks at the same moment
            held: list[int] = []
            while True:
                lease = services.task_lease_next(campaign=campaign, annotator=user, held=held)
                if lease is None:
                    for assignment_id in held:  # nothing new: finish the preloaded one
                        services.annotation_submit(
                            assignment_id=assignment_id, annotator=user, scores={OVERALL.key: 0.5},
                            idempotency_key=uuid.uuid4(),
                        )
                    break
                # every third annotator keeps a preloaded lease, as the browser does
                if index % 3 == 0 and not held:
                    held = [lease.id]
                    continue
                services.annotation_submit(
                    assignment_id=lease.id, annotator=user, scores={OVERALL.key: (lease.task_id % 10) / 10},
                    idempotency_key=uuid.uuid4(),
                )
                held = [h for h in held if h != lease.id]
                if held:  # the preloaded one becomes current: submit it too
                    services.annotation_submit(
                        assignment_id=held[0], annotator=user, scores={OVERALL.key: 0.5}, idempotency_key=uuid.uuid4()
                    )
                    held = []
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=annotate, args=(u, i)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]

    originals = Annotation.objects.filter(task__campaign=campaign, supersedes__isnull=True)
    assert originals.count() == IMAGES * REDUNDANCY
    per_task = Counter(originals.values_list("task_id", flat=True))
    assert len(per_task) == IMAGES and set(per_task.values()) == {REDUNDANCY}
    distinct = Counter(t for t, _ in set(originals.values_list("task_id", "annotator_id")))
    assert set(distinct.values()) == {REDUNDANCY}
    tasks = Task.objects.filter(campaign=campaign)
    assert tasks.filter(state=TaskState.DONE, submitted_count=REDUNDANCY, active_lease_count=0).count() == IMAGES
    assert not Assignment.objects.filter(task__campaign=campaign, state=AssignmentState.LEASED).exists()


@pytest.mark.celery_worker
def test_consensus_is_updated_by_the_worker_as_annotations_arrive(celery_worker):
    users = [factories.annotator() for _ in range(3)]
    image_ids = [factories.ImageFactory(status=ImageStatus.APPROVED).id for _ in range(2)]
    campaign = services.campaign_create(
        name="live", mode="overall", created_by=factories.curator(), image_ids=image_ids, redundancy=3,
        annotators=users, state="active",
    )
    for value, user in zip((0.3, 0.5, 0.7), users):
        lease = services.task_lease_next(campaign=campaign, annotator=user)
        services.annotation_submit(assignment_id=lease.id, annotator=user, scores={OVERALL.key: value}, idempotency_key=uuid.uuid4())
    row = wait_for(
        lambda: Consensus.objects.filter(campaign=campaign, count=3).first(), timeout=60, message="consensus of 3 ratings"
    )
    assert row.score == pytest.approx(0.5) and row.ci_low < 0.5 < row.ci_high
