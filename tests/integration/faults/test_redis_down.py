"""The job queue (Redis) stops: annotation goes on (pages, next task, submit), every job start is refused with a
clear 503 and leaves nothing half-made, and once Redis is back jobs start again and the consensus catches up.

Redis here is a private redis-server of this test (the broker and result backend of a gunicorn web server and a
worker on the test database); the machine's shared Redis is never stopped.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
import requests
from rest_framework.authtoken.models import Token

from aesplatform.annotation.models import Annotation, Consensus
from aesplatform.catalog.models import ImageStatus, ImportJob
from aesplatform.curation.engine.clip import TINY_MODEL
from aesplatform.curation.models import FilterRun
from aesplatform.datasets.models import Export
from aesplatform.modeling.models import ModelVersion, PrescoreRun, TrainingJob
from model_core.standard import OVERALL
from tests import factories
from tests.conftest import wait_for
from tests.factories import TEST_PASSWORD
from tests.integration.faults.services import Gunicorn, PrivateBrokerWorker, PrivateRedis, current_database_url, web_env
from tests.support.annotation import campaign_for
from tests.support.modeling import frozen_version, synthetic_images

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOB_MODELS = (ImportJob, FilterRun, Export, TrainingJob, PrescoreRun)


def _job_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in JOB_MODELS}


def _login(base_url: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base_url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(f"{base_url}/login/", data={"username": username, "password": TEST_PASSWORD,
                                                       "csrfmiddlewaretoken": token},
                          headers={"Referer": f"{base_url}/login/"}, timeout=10)
    assert answer.status_code == 200 and "/login/" not in answer.url, answer.text[:500]
    return session


def test_with_redis_down_annotation_works_job_starts_fail_clearly_and_recover(tmp_path, settings):
    redis = PrivateRedis(tmp_path)
    redis.start()
    annotator, curator = factories.annotator(), factories.curator()
    campaign = campaign_for([annotator], images=4, redundancy=1)
    annotator_api = {"Authorization": f"Token {Token.objects.create(user=annotator).key}"}
    curator_api = {"Authorization": f"Token {Token.objects.create(user=curator).key}"}
    folder = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0]) / f"queue-down-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    version = frozen_version(synthetic_images(6), user=curator)
    filterable = [factories.ImageFactory(status=ImageStatus.IMPORTED).pk for _ in range(2)]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    ModelVersion.objects.create(name="promoted", checkpoint_path=str(model_dir), promoted=True)
    starts = {
        "/api/imports/": {"kind": "folder", "path": str(folder)},
        "/api/filter-runs/": {"image_ids": filterable, "clip_model_name": TINY_MODEL, "clip_checkpoint": ""},
        "/api/exports/": {"version": version.pk, "format": "humanbeauty"},
        "/api/training-jobs/": {"dataset_version": version.pk, "preset": "tiny-cpu", "config": {"max_steps": 2}},
        "/api/prescore-runs/": {"image_ids": [item.image_id for item in version.items.all()]},
    }
    env = web_env(DATABASE_URL=current_database_url(), CELERY_BROKER_URL=redis.url(), CELERY_RESULT_BACKEND=redis.url(),
                  DJANGO_MEDIA_ROOT=str(settings.MEDIA_ROOT))
    web = Gunicorn(env, tmp_path / "gunicorn.log")
    worker = PrivateBrokerWorker(env, tmp_path / "worker.log")
    web.start()
    try:
        page = _login(web.url, annotator.username)
        curator_page = _login(web.url, curator.username)
        redis.stop()

        # annotating goes on: the pages, the next task, the submit (its consensus update is owed, not lost)
        assert page.get(f"{web.url}/annotate/{campaign.pk}/", timeout=10).status_code == 200
        for n in range(3):
            started = time.monotonic()
            lease = requests.post(f"{web.url}/api/campaigns/{campaign.pk}/next-task/", json={"held": []},
                                  headers=annotator_api, timeout=10)
            assert lease.status_code == 200, lease.text
            submit = requests.post(f"{web.url}/api/assignments/{lease.json()['id']}/submit/", headers=annotator_api,
                                   json={"scores": {OVERALL.key: 0.2 + 0.3 * n}, "idempotency_key": str(uuid.uuid4()),
                                         "time_spent_ms": 700}, timeout=10)
            assert submit.status_code == 201, submit.text
            assert time.monotonic() - started < 3.0
        assert Annotation.objects.filter(task__campaign=campaign).count() == 3

        # every kind of job start: a clear 503, and no job row left behind
        before = _job_counts()
        for url, body in starts.items():
            answer = requests.post(web.url + url, json=body, headers=curator_api, timeout=20)
            assert answer.status_code == 503, (url, answer.status_code, answer.text)
            assert answer.json()["code"] == "job_queue_unavailable", answer.text
            assert "job queue is unavailable" in answer.json()["detail"]
        # the page shows the same message
        form = curator_page.get(f"{web.url}/imports/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        shown = curator_page.post(f"{web.url}/imports/", data={"kind": "folder", "path": str(folder),
                                                               "csrfmiddlewaretoken": csrf},
                                  headers={"Referer": f"{web.url}/imports/"}, timeout=20)
        assert "job queue is unavailable" in shown.text
        assert _job_counts() == before == dict.fromkeys(before, 0)
        assert not Consensus.objects.filter(campaign=campaign).exists()

        # Redis is back: jobs start again, and a worker catches the consensus up on the submits made meanwhile
        redis.start()
        for url, body in starts.items():
            answer = requests.post(web.url + url, json=body, headers=curator_api, timeout=20)
            assert answer.status_code == 201, (url, answer.status_code, answer.text)
        assert _job_counts() == dict.fromkeys(before, 1)
        worker.start()
        wait_for(lambda: Consensus.objects.filter(campaign=campaign, dimension=OVERALL.index).count() == 3,
                 timeout=60, message=f"the consensus to catch up; worker log:\n{worker.logs()[-3000:]}")
    finally:
        worker.stop()
        web.stop()
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
