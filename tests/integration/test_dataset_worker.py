"""An export through a real Celery worker: progress, the files appear whole under their final name, two
requests at once make one export, and the trainer's reader reads the result."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from django.db import connection

from aesplatform.datasets import services
from aesplatform.datasets.models import Export
from model_core.data import read_training_jsonl
from tests import factories
from tests.conftest import wait_for
from tests.support.datasets import archive_bytes, labelled_set


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_make_one_export_that_a_worker_writes(celery_worker):
    curator = factories.curator()
    labelled_set(30, 20, groups={1: 3, 3: 3, 5: 3})
    version = services.dataset_version_freeze(version=services.dataset_version_create(
        created_by=curator, name=f"worker-{uuid.uuid4().hex[:8]}", split_seed=7))

    barrier = threading.Barrier(2)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def request_export():
        try:
            barrier.wait(timeout=10)
            export, created = services.export_create(version=version, format="training_jsonl",
                                                     options={"image_paths": "absolute"}, created_by=curator)
            results.append((export.pk, created))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request_export) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len({pk for pk, _ in results}) == 1 and sorted(c for _, c in results) == [False, True]
    assert Export.objects.count() == 1

    export_id = results[0][0]
    export = wait_for(lambda: Export.objects.filter(pk=export_id, state__in=["succeeded", "failed"]).first(),
                      timeout=60, message="the export to finish")
    assert export.state == "succeeded", export.error + celery_worker.logs()[-3000:]
    assert export.processed == export.total == 50
    root = Path(export.path)
    assert not [p for p in root.parent.iterdir() if ".partial-" in p.name]
    train = read_training_jsonl(root / "train.jsonl")  # absolute paths, images checked by the reader
    test = read_training_jsonl(root / "test.jsonl")
    assert len(train.records) + len(test.records) == 50
    assert len(archive_bytes(export)) == export.archive_size and export.archive_path == ""
