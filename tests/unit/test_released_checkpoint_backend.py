"""The platform with a released HumanAesExpert checkpoint (the stand-in of tests/support), in-process: what the
backend does not give is stored as NULL, served as null (API and schema) and shown as "not available"; its runs go
to their own queue at the reference's 12 tiles; active learning refuses to order by an uncertainty it never gave;
a run in an environment without the pinned runtime fails naming the missing package."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from aesplatform.annotation.models import Campaign, Task
from aesplatform.common.models import DIMENSION_FIELDS, JobState
from aesplatform.modeling import services
from aesplatform.modeling.active import ActiveLearningUnavailable
from aesplatform.modeling.models import ModelBackend, ModelVersion, Prescore, PrescoreRun
from model_core.scoring import ImageScore
from tests import factories
from tests.support.humanaesexpert_standin import write_standin_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def released(tmp_path) -> ModelVersion:
    """The stand-in registered through the registry service, promoted."""
    checkpoint = write_standin_checkpoint(tmp_path / "HumanAesExpert-standin")
    version = services.model_version_register(checkpoint_path=str(checkpoint))
    ModelVersion.objects.filter(pk=version.pk).update(promoted=True)
    version.refresh_from_db()
    return version


def _remote_code_scores(n: int) -> list[ImageScore]:
    return [ImageScore(path=str(i), expert_scores=[0.1 * (i + 1)] * 11 + [0.3], metavoter_score=0.42 + 0.01 * i)
            for i in range(n)]


def _prescored(version: ModelVersion, n: int = 3) -> list:
    images = [factories.ImageFactory(status="approved") for _ in range(n)]
    rows = services.prescore_rows(version.pk, [(im.pk, "") for im in images], _remote_code_scores(n))
    Prescore.objects.bulk_create(rows)
    return images


def test_prescore_rows_store_null_for_what_the_model_does_not_give():
    row = services.prescore_rows(1, [(1, "a")], [ImageScore(path="a", expert_scores=[0.6] * 12,
                                                            metavoter_score=0.5)])[0]
    assert row.lm_score is None and row.regression_score is None and row.uncertainty is None
    assert row.metavoter_score == 0.5 and row.scores_list() == [0.6] * 12
    nan = float("nan")
    row = services.prescore_rows(1, [(1, "a")], [ImageScore(path="a", lm_score=nan, regression_score=0.2,
                                                            metavoter_score=0.5, uncertainty=nan)])[0]
    assert row.lm_score is None and row.regression_score == 0.2 and row.uncertainty is None
    assert row.scores_list() == [None] * 12


def test_the_stand_in_registers_as_a_released_checkpoint(released):
    assert released.backend == ModelBackend.HUMANAESEXPERT and released.name == "HumanAesExpert-standin"


def test_api_serves_null_and_the_schema_declares_it(released, curator_client):
    _prescored(released)
    response = curator_client.get(f"/api/prescores/?model_version={released.pk}")
    assert response.status_code == 200, response.content
    rows = response.json()["results"]
    assert len(rows) == 3
    for row in rows:
        assert row["lm_score"] is None and row["regression_score"] is None and row["uncertainty"] is None
        assert row["metavoter_score"] is not None and row[DIMENSION_FIELDS[-1]] == pytest.approx(0.3)
    by_uncertainty = curator_client.get(f"/api/prescores/?model_version={released.pk}&ordering=-uncertainty")
    assert by_uncertainty.status_code == 200 and len(by_uncertainty.json()["results"]) == 3

    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    properties = schema["components"]["schemas"]["ModelPrescore"]["properties"]
    for name in ("lm_score", "regression_score", "uncertainty"):
        assert properties[name].get("nullable") is True, name
    assert not properties["metavoter_score"].get("nullable")


def test_the_prescores_page_shows_not_available(released, curator_user):
    _prescored(released)
    client = Client()
    client.force_login(curator_user)
    page = client.get(f"/models/prescores/?model={released.pk}&order=uncertainty")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("not available") >= 3 * 3  # LM, regression and uncertainty of each row (+ histograms)
    assert 'data-testid="not-available"' in html


def test_runs_go_to_their_own_queue_at_the_reference_twelve_tiles(released, curator_client, tmp_path):
    from aesplatform.celery import app

    _prescored(released, 0)
    image = factories.ImageFactory(status="approved")
    response = curator_client.post("/api/prescore-runs/", {"image_ids": [image.pk]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["max_tiles"] == 12
    released_task = PrescoreRun(model_version=released).job_task_name()
    assert app.amqp.router.route({}, released_task)["queue"].name == "humanaesexpert"
    ours = ModelVersion.objects.create(name="ours", checkpoint_path=str(tmp_path))
    assert app.amqp.router.route({}, PrescoreRun(model_version=ours).job_task_name())["queue"].name == "gpu"
    run = services.prescore_run_create(created_by=factories.curator(), image_ids=[image.pk], model_version=ours,
                                       enqueue=False)
    assert run.max_tiles == 1


def test_active_learning_refuses_to_order_by_an_uncertainty_the_model_does_not_give(released, curator_client,
                                                                                   curator_user):
    images = _prescored(released)
    campaign = factories.CampaignFactory(task_order="active", created_by=curator_user)
    for image in images:
        Task.objects.create(campaign=campaign, image=image, priority=0.5)
    response = curator_client.post(f"/api/campaigns/{campaign.pk}/active-priorities/")
    assert response.status_code == 409 and response.json()["code"] == "no_uncertainty"
    assert "uncertainty" in response.json()["detail"] and released.name in response.json()["detail"]
    assert set(Task.objects.filter(campaign=campaign).values_list("priority", flat=True)) == {0.5}

    before = Campaign.objects.count()
    response = curator_client.post("/api/campaigns/", {"name": "al", "mode": "expert", "redundancy": 1,
                                                       "image_ids": [im.pk for im in images],
                                                       "task_order": "active"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "no_uncertainty"
    assert Campaign.objects.count() == before


def test_a_model_whose_prescores_lack_uncertainty_is_refused_too(curator_user, tmp_path):
    ours = ModelVersion.objects.create(name="partial", checkpoint_path=str(tmp_path))
    images = _prescored(ours, 2)
    campaign = factories.CampaignFactory(task_order="active", created_by=curator_user)
    Task.objects.create(campaign=campaign, image=images[0])
    with pytest.raises(ActiveLearningUnavailable, match="partial"):
        services.campaign_priorities_refresh(campaign=campaign, model_version=ours)


def test_a_run_without_the_pinned_runtime_fails_naming_the_package_and_the_target(released, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "einops", None)  # this process is the main venv: no overlay
    services.SCORERS.clear()
    image = factories.ImageFactory(status="approved")
    run = services.prescore_run_create(created_by=factories.curator(), image_ids=[image.pk], enqueue=False)
    with caplog.at_level(logging.ERROR):
        run = services.prescore_run_execute(run_id=run.pk, device="cpu")
    assert run.state == JobState.FAILED
    assert "einops" in run.error and "make humanaesexpert-runtime" in run.error
    assert not Prescore.objects.filter(model_version=released).exists()


def test_make_test_sets_the_runtime_up_and_compose_runs_its_worker():
    repo = Path(__file__).resolve().parents[2]
    rules = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in
             (repo / "Makefile").read_text().splitlines() if line and not line[0].isspace() and ":" in line}
    assert "humanaesexpert-runtime" in rules["test"] and "humanaesexpert-runtime" in rules["test-fast"]
    assert "-Q humanaesexpert" in (repo / "scripts" / "run_platform.sh").read_text()
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed here (.ci/run installs Debian's docker-compose)")
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 60, "POSTGRES_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "a:b",
           "S3_ACCESS_KEY": "key", "S3_SECRET_KEY": "secret"}
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("\n  worker-humanaesexpert:\n", 1)[1].split("\nvolumes:", 1)[0]
    assert "-Q humanaesexpert" in block and "PYTHONPATH: /opt/humanaesexpert" in block and "driver: nvidia" in block
    assert "--target /opt/humanaesexpert -r requirements-humanaesexpert.lock" in (repo / "Dockerfile").read_text()


def test_a_nan_metavoter_is_an_error_not_a_skipped_image():
    with pytest.raises(ValueError, match="NaN"):
        services.prescore_rows(1, [(1, "a")], [ImageScore(path="a", expert_scores=[0.5] * 12,
                                                          metavoter_score=float("nan"))])
