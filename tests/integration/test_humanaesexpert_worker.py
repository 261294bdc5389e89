"""A released HumanAesExpert checkpoint end to end, through a stand-in of it (tests/support): registered and
promoted through the API, pre-scored by a REAL Celery worker on the `humanaesexpert` queue running the pinned
runtime (`make humanaesexpert-runtime` first on its PYTHONPATH); the stored rows hold what the remote code gave
(run_metavoter, expert_score at 12 tiles + thumbnail) and NULL for the rest, each image once; a second run
resumes with nothing left to do; active learning then refuses clearly, and the run's own refresh only logs it."""

from __future__ import annotations

import pytest

from aesplatform.annotation.models import Task
from aesplatform.common.models import DIMENSION_FIELDS, JobState
from aesplatform.modeling import services
from aesplatform.modeling.models import Prescore, PrescoreRun
from model_core.data import image_to_pixels, load_image
from tests import factories
from tests.conftest import wait_for
from tests.support.humanaesexpert_standin import standin_outputs, write_standin_checkpoint
from tests.support.modeling import synthetic_images

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_released_checkpoint_prescored_by_its_own_worker_in_the_pinned_runtime(
        celery_worker_factory, humanaesexpert_runtime, curator_client, curator_user, tmp_path):
    worker = celery_worker_factory(queues="humanaesexpert", pythonpath=(humanaesexpert_runtime,),
                                   HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    checkpoint = write_standin_checkpoint(tmp_path / "HumanAesExpert-standin")
    response = curator_client.post("/api/model-versions/", {"checkpoint_path": str(checkpoint)}, format="json")
    assert response.status_code == 201, response.content
    version_id = response.json()["id"]
    assert response.json()["backend"] == "humanaesexpert"
    assert curator_client.post(f"/api/model-versions/{version_id}/promote/").status_code == 200

    images = [image for image, _ in synthetic_images(3, size=(48, 32), status="approved")]
    campaign = factories.CampaignFactory(task_order="active", created_by=curator_user)
    for image in images:
        Task.objects.create(campaign=campaign, image=image, priority=0.5)

    response = curator_client.post("/api/prescore-runs/", {"image_ids": [im.pk for im in images]}, format="json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    assert response.json()["max_tiles"] == 12
    run = wait_for(lambda: PrescoreRun.objects.filter(pk=run_id, state__in=[JobState.SUCCEEDED, JobState.FAILED])
                   .first(), timeout=120, message=f"the run to finish; worker log:\n{worker.logs()[-3000:]}")
    assert run.state == JobState.SUCCEEDED, f"{run.error}\n{worker.logs()[-3000:]}"
    assert run.processed == 3

    rows = {p.image_id: p for p in Prescore.objects.filter(model_version_id=version_id)}
    assert sorted(rows) == sorted(im.pk for im in images)  # each image once
    for image in images:
        row = rows[image.pk]
        pixels = image_to_pixels(load_image(services.image_path(image.file.name)), max_tiles=12, tile_size=448)
        expected = standin_outputs(checkpoint, pixels)
        assert row.metavoter_score == pytest.approx(expected["metavoter"], abs=1e-6)
        assert [getattr(row, f) for f in DIMENSION_FIELDS] == pytest.approx(expected["expert"], abs=1e-6)
        assert row.lm_score is None and row.regression_score is None and row.uncertainty is None
    logs = worker.logs()
    assert "transformers 4.44.2" in logs  # the worker ran the pinned runtime, not the main venv's transformers
    assert "active-learning campaigns not re-prioritised" in logs and "no uncertainty" in logs
    assert set(Task.objects.filter(campaign=campaign).values_list("priority", flat=True)) == {0.5}

    again = curator_client.post("/api/prescore-runs/", {"image_ids": [im.pk for im in images]}, format="json")
    again_run = wait_for(lambda: PrescoreRun.objects.filter(pk=again.json()["id"], state=JobState.SUCCEEDED).first(),
                         timeout=60, message="the second run to finish")
    assert again_run.processed == 3 and Prescore.objects.filter(model_version_id=version_id).count() == 3

    response = curator_client.post(f"/api/campaigns/{campaign.pk}/active-priorities/")
    assert response.status_code == 409 and response.json()["code"] == "no_uncertainty"
