"""Modeling API and services in-process: training jobs (run, cancel, resume), the registry, promotion, pre-scoring;
every bad input of issue 8 gives a clear 4xx and records nothing; curators and admins only."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from aesplatform.common.locks import LockNamespace
from aesplatform.common.models import JobState
from aesplatform.modeling import services
from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun, TrainingJob
from tests.support.modeling import FAST, draft_version, frozen_version, synthetic_images

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _training_root(settings, tmp_path):
    settings.AESP_TRAINING_ROOT = tmp_path / "training"


@pytest.fixture
def version(curator_user):
    return frozen_version(synthetic_images(15), user=curator_user)


def _job(client, version, **config):
    return client.post("/api/training-jobs/", {"dataset_version": version.pk, "preset": "tiny-cpu",
                                               "config": {**FAST, **config}}, format="json")


def _trained(client, version, **config):
    response = _job(client, version, **config)
    assert response.status_code == 201, response.content
    return services.training_job_run(job_id=response.json()["id"])


ROUTES = [("get", "/api/training-jobs/"), ("post", "/api/training-jobs/"), ("get", "/api/training-jobs/1/"),
          ("post", "/api/training-jobs/1/cancel/"), ("get", "/api/model-versions/"), ("post", "/api/model-versions/"),
          ("get", "/api/model-versions/1/"), ("post", "/api/model-versions/1/promote/"),
          ("get", "/api/prescore-runs/"), ("post", "/api/prescore-runs/"), ("get", "/api/prescore-runs/1/"),
          ("get", "/api/prescores/")]


@pytest.mark.parametrize("method,url", ROUTES)
def test_annotators_and_anonymous_users_are_refused(annotator_client, anonymous_client, method, url):
    assert getattr(annotator_client, method)(url, {}, format="json").status_code == 403
    assert getattr(anonymous_client, method)(url, {}, format="json").status_code in (401, 403)


def test_admins_may_use_it(admin_client_api):
    assert admin_client_api.get("/api/training-jobs/").status_code == 200
    assert admin_client_api.get("/api/model-versions/").status_code == 200


def test_training_job_bad_input_is_refused_and_records_nothing(curator_client, curator_user, version, tmp_path):
    empty = frozen_version([], user=curator_user, name="empty")
    cases = [
        ({"dataset_version": draft_version(curator_user).pk, "preset": "tiny-cpu"}, 409, "not_frozen"),
        ({"dataset_version": empty.pk, "preset": "tiny-cpu"}, 400, "empty_dataset"),
        ({"dataset_version": version.pk, "preset": "1B-LoRA"}, 400, "backbone_missing"),
        ({"dataset_version": version.pk, "preset": "8B-LoRA", "config": {"backbone_path": str(tmp_path / "no")}},
         400, "backbone_missing"),
        ({"dataset_version": version.pk, "preset": "tiny-cpu", "config": {"lr": "fast"}}, 400, "invalid_config"),
        ({"dataset_version": version.pk, "preset": "tiny-cpu", "config": {"optimizer": "sgd"}}, 400,
         "unknown_config_key"),
        # AESP_TRAINING_MAX_PROCESSES is 1 unless set
        ({"dataset_version": version.pk, "preset": "tiny-cpu", "config": {"processes": 2}}, 400, "invalid_config"),
    ]
    for body, code, error in cases:
        response = curator_client.post("/api/training-jobs/", body, format="json")
        assert response.status_code == code, (body, response.content)
        assert response.json()["code"] == error
    for body in ({"dataset_version": version.pk, "preset": "huge"}, {"dataset_version": 999999, "preset": "tiny-cpu"},
                 {"preset": "tiny-cpu"}):
        assert curator_client.post("/api/training-jobs/", body, format="json").status_code == 400
    assert TrainingJob.objects.count() == 0


def test_training_job_runs_evaluates_registers_and_promotes(curator_client, version, curator_user):
    job = _trained(curator_client, version)
    assert job.state == JobState.SUCCEEDED, job.error
    data = curator_client.get(f"/api/training-jobs/{job.pk}/").json()
    assert data["step"] == data["total_steps"] == 2
    assert [p[0] for p in data["loss_curve"]] == [1, 2] and data["loss"] is not None
    assert "started" in data["log"] and "test PLCC" in data["log"] and data["eta_seconds"] == 0.0
    report = data["metrics"][-1]["report"]
    assert set(report["overall"]) == {"lm", "regression", "expert", "metavoter"}
    assert data["model_version"] is not None
    model = curator_client.get(f"/api/model-versions/{data['model_version']}/").json()
    assert model["backend"] == "model_core" and model["training_job"] == job.pk
    assert model["metrics"]["overall"]["metavoter"]["plcc"] == report["overall"]["metavoter"]["plcc"]
    assert (job.output_dir + "/evaluation") == model["report_dir"]
    # the reference script's metrics ride along under their own names; the held-out figure says how it was measured
    assert model["metrics"]["reference"]["metavoter"]["n"] == report["overall"]["metavoter"]["n"]
    assert model["metrics"]["holdout"]["metavoter_measured"]["method"] in ("cross_fit", "not_measured")
    assert "held-out MetaVoter PLCC" in data["log"]
    # registering the same job again gives the same model back; cancelling a finished job is a conflict
    again = curator_client.post("/api/model-versions/", {"training_job": job.pk}, format="json")
    assert again.status_code == 201 and again.json()["id"] == model["id"]
    assert curator_client.post(f"/api/training-jobs/{job.pk}/cancel/").status_code == 409
    # promote; then a second model (its checkpoint directory registered) takes over: exactly one promoted
    assert curator_client.post(f"/api/model-versions/{model['id']}/promote/").json()["promoted"] is True
    other = curator_client.post("/api/model-versions/", {"checkpoint_path": model["checkpoint_path"], "name": "copy"},
                                format="json")
    assert other.status_code == 201 and other.json()["backend"] == "model_core"
    assert curator_client.post(f"/api/model-versions/{other.json()['id']}/promote/").status_code == 200
    assert list(ModelVersion.objects.filter(promoted=True).values_list("name", flat=True)) == ["copy"]

    # pre-scoring with the promoted model: every image once, scores in [0, 1]
    images = [item.image_id for item in version.items.all()]
    response = curator_client.post("/api/prescore-runs/", {"image_ids": images, "batch_size": 4}, format="json")
    assert response.status_code == 201
    run = services.prescore_run_execute(run_id=response.json()["id"], device="cpu")
    assert run.state == JobState.SUCCEEDED and run.processed == run.total == len(images)
    assert Prescore.objects.filter(model_version__name="copy").count() == len(images)
    row = Prescore.objects.first()
    assert all(0.0 <= v <= 1.0 for v in [row.lm_score, row.regression_score, row.metavoter_score,
                                          *row.scores_list()])
    # a second run over the same images scores nothing twice
    rerun = services.prescore_run_create(created_by=curator_user, image_ids=images, enqueue=False)
    assert services.prescore_run_execute(run_id=rerun.pk, device="cpu").processed == len(images)
    assert Prescore.objects.count() == len(images)
    listed = curator_client.get("/api/prescores/?ordering=-metavoter_score").json()["results"]
    values = [p["metavoter_score"] for p in listed]
    assert values == sorted(values, reverse=True) and len(values) == len(images)
    assert curator_client.get("/api/prescores/?ordering=bogus").status_code == 400


def test_cancel_pending_and_running_jobs(curator_client, version, monkeypatch):
    pending = _job(curator_client, version).json()
    assert curator_client.post(f"/api/training-jobs/{pending['id']}/cancel/").json()["state"] == "cancelled"
    assert services.training_job_run(job_id=pending["id"]).state == "cancelled"  # a late delivery does nothing

    job = _job(curator_client, version, max_steps=6).json()
    real = services._JobReporter.progress

    def cancel_at_step_2(self, p):
        real(self, p)
        if p.stage == "train" and p.step == 2:
            TrainingJob.objects.filter(pk=self.job_id).update(cancel_requested=True)

    monkeypatch.setattr(services._JobReporter, "progress", cancel_at_step_2)
    monkeypatch.setattr(services, "PROGRESS_MIN_INTERVAL_S", 0.0)
    stopped = services.training_job_run(job_id=job["id"])
    assert stopped.state == "cancelled" and stopped.step == 2 and "cancelled" in stopped.log
    assert not ModelVersion.objects.exists()


def test_an_interrupted_job_resumes_from_its_last_checkpoint(curator_client, version, monkeypatch):
    job_id = _job(curator_client, version, max_steps=4).json()["id"]
    real = services._JobReporter.progress

    def stop_at_2(self, p):
        real(self, p)
        if p.stage == "train" and p.step == 2:
            TrainingJob.objects.filter(pk=self.job_id).update(cancel_requested=True)

    monkeypatch.setattr(services._JobReporter, "progress", stop_at_2)
    monkeypatch.setattr(services, "PROGRESS_MIN_INTERVAL_S", 0.0)
    services.training_job_run(job_id=job_id)
    monkeypatch.undo()
    # what a killed worker leaves: the job still running with a heartbeat gone stale, a checkpoint on disk; the
    # next delivery (the sweep's) resumes it
    TrainingJob.objects.filter(pk=job_id).update(state="running", cancel_requested=False, finished_at=None,
                                                 heartbeat_at=timezone.now() - timedelta(hours=1))
    job = services.training_job_run(job_id=job_id)
    assert job.state == "succeeded", job.error
    assert "resuming after an interrupted run" in job.log and "resumed from step 2" in job.log
    assert "continuing from the checkpoint of step 2" in job.log
    assert [p[0] for p in job.loss_curve] == [1, 2, 3, 4]


def test_registry_bad_input(curator_client, curator_user, version, tmp_path):
    failed = TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator_user,
                                        state="failed", error="boom")
    response = curator_client.post("/api/model-versions/", {"training_job": failed.pk}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "job_not_succeeded"
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text('{"model_type": "bert"}')
    for body in ({"checkpoint_path": str(tmp_path / "missing")}, {"checkpoint_path": "relative/dir"},
                 {"checkpoint_path": str(tmp_path / "empty")}, {"checkpoint_path": str(tmp_path / "junk")}, {},
                 {"training_job": failed.pk, "checkpoint_path": str(tmp_path)}):
        assert curator_client.post("/api/model-versions/", body, format="json").status_code == 400, body
    assert not ModelVersion.objects.exists()
    # a model whose job failed cannot be promoted (a row that got there some other way)
    model = ModelVersion.objects.create(name="from-failed", training_job=failed, checkpoint_path=str(tmp_path))
    response = curator_client.post(f"/api/model-versions/{model.pk}/promote/")
    assert response.status_code == 409 and response.json()["code"] == "job_not_succeeded"
    assert not ModelVersion.objects.filter(promoted=True).exists()


def test_a_released_humanaesexpert_directory_registers_as_that_backend(curator_client, tmp_path):
    released = tmp_path / "HumanAesExpert-1B"
    released.mkdir()
    (released / "config.json").write_text(json.dumps({
        "architectures": ["HumanAesExpertModel"], "model_type": "internvl_chat",
        "auto_map": {"AutoModel": "modeling_humanaesexpert.HumanAesExpertModel"}}))
    (released / "model.safetensors").write_bytes(b"\0" * 16)
    (released / "modeling_humanaesexpert.py").write_text("# remote code\n")
    response = curator_client.post("/api/model-versions/", {"checkpoint_path": str(released)}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["backend"] == "humanaesexpert" and response.json()["name"] == "HumanAesExpert-1B"


def test_two_promotions_at_once_the_second_gets_a_conflict(curator_client, tmp_path):
    model = ModelVersion.objects.create(name="m", checkpoint_path=str(tmp_path))
    db = connection.settings_dict
    other = psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"] or "postgres",
                            password=db["PASSWORD"] or None, dbname=db["NAME"], autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [int(LockNamespace.PROMOTION), 0])  # a promotion in flight
        response = curator_client.post(f"/api/model-versions/{model.pk}/promote/")
        assert response.status_code == 409 and response.json()["code"] == "promotion_in_progress"
        assert not ModelVersion.objects.filter(promoted=True).exists()
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [int(LockNamespace.PROMOTION), 0])  # it finished
    finally:
        other.close()
    response = curator_client.post(f"/api/model-versions/{model.pk}/promote/")
    assert response.status_code == 200, response.content


def test_prescoring_bad_input(curator_client, curator_user, tmp_path):
    response = curator_client.post("/api/prescore-runs/", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "no_promoted_model"
    ModelVersion.objects.create(name="m", checkpoint_path=str(tmp_path), promoted=True)
    response = curator_client.post("/api/prescore-runs/", {"image_ids": [987654]}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unknown_images"
    response = curator_client.post("/api/prescore-runs/", {}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "no_images"
    assert curator_client.post("/api/prescore-runs/", {"max_tiles": 0}, format="json").status_code == 400
    assert not PrescoreRun.objects.exists()


def test_a_training_failure_ends_the_job_failed_with_its_reason(curator_client, version):
    import os

    from django.core.files.storage import default_storage

    job_id = _job(curator_client, version).json()["id"]
    item = version.items.filter(split="train").select_related("image").first()
    os.remove(default_storage.path(item.image.file.name))  # an image file went missing before training
    job = services.training_job_run(job_id=job_id)
    assert job.state == "failed" and job.finished_at is not None
    assert job.error and "failed:" in job.log and not ModelVersion.objects.exists()
    assert curator_client.post("/api/model-versions/", {"training_job": job_id}, format="json").status_code == 409
