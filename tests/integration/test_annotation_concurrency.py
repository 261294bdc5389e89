"""Task distribution under real concurrency on PostgreSQL, and the consensus update through a real worker."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from django.db import IntegrityError, connection, connections, transaction

from aesplatform.annotation import hotpath, services
from aesplatform.annotation.models import Annotation, Assignment, AssignmentState, Consensus, Task, TaskState
from aesplatform.catalog.models import Image, ImageStatus
from model_core.standard import OVERALL
from tests import factories
from tests.conftest import wait_for
from tests.support.annotation import campaign_for

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
        services.annotation_submit(
            assignment_id=lease.id, annotator=user, scores={OVERALL.key: value}, idempotency_key=uuid.uuid4()
        )
    row = wait_for(
        lambda: Consensus.objects.filter(campaign=campaign, count=3).first(),
        timeout=60,
        message="consensus of 3 ratings",
    )
    assert row.score == pytest.approx(0.5) and row.ci_low < 0.5 < row.ci_high


TABS = 6
ROUNDS = 40


def test_one_annotator_asking_from_several_tabs_at_once_gets_tasks_or_a_clear_refusal_never_an_error(monkeypatch):
    # Several requests of one annotator at the same moment (tabs, a retry while the first is in flight): each
    # statement's snapshot may predate another's committed lease of the same task; the answer is still a task of
    # its own (or the lease cap), never a duplicate assignment or a database error.
    monkeypatch.setattr(services, "_queue_quality_update", lambda campaign_id: None)
    user = factories.annotator()
    campaign = services.campaign_create(
        name="tabs", mode="overall", created_by=factories.curator(), image_ids=_bulk_images(TABS * ROUNDS),
        redundancy=1, annotators=[user], state="active", seed=1,
    )
    errors: list[BaseException] = []
    refusals = Counter()
    leased: list[int] = []
    start, done = threading.Barrier(TABS), threading.Barrier(TABS)

    def tab(index):
        try:
            for _ in range(ROUNDS):
                start.wait()
                try:
                    lease = services.task_lease_next(campaign=campaign, annotator=user)
                    if lease is not None:
                        leased.append(lease.id)
                except services.ConflictError as exc:
                    refusals[exc.code] += 1
                done.wait()
                if index == 0:  # between rounds the annotator's leases are handed back: the next round leases anew
                    for assignment in Assignment.objects.filter(annotator=user, state=AssignmentState.LEASED):
                        services.assignment_skip(assignment_id=assignment.id, annotator=user)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            start.abort()
            done.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(TABS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert leased and set(refusals) <= {"too_many_leases"}
    assignments = Assignment.objects.filter(annotator=user)
    assert assignments.count() == len(set(leased))
    assert assignments.values("task_id").distinct().count() == assignments.count()


def test_a_lease_that_lost_the_race_to_the_annotators_own_other_request_is_taken_again_on_another_task(monkeypatch):
    # The race of the test above, made certain: the annotator's other request leases the task this one picked and
    # commits in between, and the database's UNIQUE (task, annotator) refuses this one (a real violation).
    user = factories.annotator()
    campaign = campaign_for([user], images=3, redundancy=1)
    lease_in_one_statement = hotpath.task_lease_in_one_statement
    attempts = []

    def other_request_wins_first(*, assignment, campaign_id, redundancy):
        attempts.append(assignment)
        if len(attempts) == 1:
            other = services.task_lease_next(campaign=campaign, annotator=user)  # the other tab, committed
            with transaction.atomic():
                Assignment.objects.create(task_id=other.task_id, annotator=user, state=AssignmentState.LEASED,
                                          leased_at=assignment.leased_at, leased_until=assignment.leased_until)
        return lease_in_one_statement(assignment=assignment, campaign_id=campaign_id, redundancy=redundancy)

    monkeypatch.setattr(hotpath, "task_lease_in_one_statement", other_request_wins_first)
    lease = services.task_lease_next(campaign=campaign, annotator=user, held=[])

    assert len(attempts) == 3  # this request's first try, the other request's lease, this request's second try
    leases = Assignment.objects.filter(annotator=user)
    assert leases.count() == 2 and leases.values("task_id").distinct().count() == 2
    assert lease.id in set(leases.values_list("id", flat=True))


def test_a_lease_refused_by_another_constraint_is_not_retried(monkeypatch):
    user = factories.annotator()
    campaign = campaign_for([user], images=2, redundancy=1)
    attempts = []

    def refused(**kwargs):
        attempts.append(kwargs)
        with transaction.atomic():  # a real CHECK violation: a lease that ends before it starts
            Assignment.objects.create(task=Task.objects.filter(campaign=campaign).first(), annotator=user,
                                      state=AssignmentState.LEASED, leased_at=kwargs["assignment"].leased_at,
                                      leased_until=kwargs["assignment"].leased_at)
        raise AssertionError("unreachable")

    monkeypatch.setattr(hotpath, "task_lease_in_one_statement", refused)
    with pytest.raises(IntegrityError):
        services.task_lease_next(campaign=campaign, annotator=user)
    assert len(attempts) == 1 and not Assignment.objects.filter(annotator=user).exists()


@pytest.fixture
def task_row_held():
    """hold(task_id) row-locks a task from another connection, as a concurrent submit or lease of it does; release()
    commits that transaction."""
    import psycopg

    from tests.integration.faults.services import current_database_url

    other = psycopg.connect(current_database_url())

    class Held:
        def hold(self, task_id: int) -> None:
            other.execute(f"SELECT 1 FROM {Task._meta.db_table} WHERE id = %s FOR UPDATE", [task_id])

        def release(self) -> None:
            other.commit()

    yield Held()
    other.close()


def test_a_task_held_for_a_moment_by_another_transaction_is_leased_not_reported_as_nothing_left(
    monkeypatch, task_row_held
):
    user = factories.annotator()
    campaign = campaign_for([user], images=1, redundancy=1)
    task = Task.objects.get(campaign=campaign)
    task_row_held.hold(task.id)
    pauses = []

    def other_transaction_ends(attempt):
        pauses.append(attempt)
        task_row_held.release()

    monkeypatch.setattr(services, "_pause_before_looking_again", other_transaction_ends)
    lease = services.task_lease_next(campaign=campaign, annotator=user)

    assert lease is not None and lease.task_id == task.id
    assert pauses == [1]


def test_a_task_held_throughout_answers_nothing_left_after_a_bounded_number_of_looks(monkeypatch, task_row_held):
    user = factories.annotator()
    campaign = campaign_for([user], images=1, redundancy=1)
    task_row_held.hold(Task.objects.get(campaign=campaign).id)
    pauses = []
    monkeypatch.setattr(services, "_pause_before_looking_again", pauses.append)

    assert services.task_lease_next(campaign=campaign, annotator=user) is None
    assert pauses == list(range(1, services.LEASE_ATTEMPTS))
    assert not Assignment.objects.filter(annotator=user).exists()
