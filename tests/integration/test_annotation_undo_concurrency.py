"""An undo of a skip racing another annotator's lease of the freed place, on PostgreSQL: one of them gets the
task, never both, and the task's lease counter stays exact."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from aesplatform.annotation import services
from aesplatform.annotation.models import Assignment, AssignmentState, Task
from aesplatform.catalog.models import ImageStatus
from aesplatform.common.exceptions import ConflictError
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROUNDS = 12


def _race(*, undoer, other) -> tuple[object, bool, Task]:
    """One round: `undoer` skips the only task (redundancy 1), then undoes it while `other` asks for a task."""
    campaign = services.campaign_create(
        name="race", mode="overall", created_by=factories.curator(), redundancy=1, state="active",
        image_ids=[factories.ImageFactory(status=ImageStatus.APPROVED).id], annotators=[undoer, other],
    )
    mine = services.task_lease_next(campaign=campaign, annotator=undoer)
    services.assignment_skip(assignment_id=mine.id, annotator=undoer)
    barrier = threading.Barrier(2)
    result: dict[str, object] = {}

    def restore():
        try:
            barrier.wait()
            services.assignment_restore(assignment_id=mine.id, annotator=undoer)
            result["restore"] = "won"
        except ConflictError as exc:
            result["restore"] = exc.code
        finally:
            connections.close_all()

    def lease():
        try:
            barrier.wait()
            result["lease"] = services.task_lease_next(campaign=campaign, annotator=other)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=restore), threading.Thread(target=lease)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return result["restore"], result["lease"] is not None, Task.objects.get(campaign=campaign)


def test_an_undo_and_another_annotators_lease_of_the_freed_place_never_both_win():
    assert connection.vendor == "postgresql"
    undoer, other = factories.annotator(), factories.annotator()
    outcomes = []
    for _ in range(ROUNDS):
        restore, leased, task = _race(undoer=undoer, other=other)
        restored = restore == "won"
        assert restored != leased, (restore, leased)  # exactly one of them has the task
        if not restored:
            assert restore == "task_taken"
        assert task.active_lease_count == 1
        live = Assignment.objects.filter(task=task, state=AssignmentState.LEASED)
        assert list(live.values_list("annotator_id", flat=True)) == [undoer.pk if restored else other.pk]
        outcomes.append("restore" if restored else "lease")
    print("race outcomes:", {k: outcomes.count(k) for k in set(outcomes)})
