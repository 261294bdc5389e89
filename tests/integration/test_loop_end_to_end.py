"""Done means of issue 8: the whole loop on synthetic data through the API, with a real Celery worker (cpu and gpu
queues), PostgreSQL and Redis -- the same code `manage.py demo_loop` runs (aesplatform.modeling.demo):

import -> filter -> approve -> campaign -> simulated annotators -> consensus -> dataset version -> export ->
tiny training job -> model version with held-out PLCC >= 0.7 -> promote -> pre-score.

Size: 200 synthetic expert images (150 train / 50 test), 14 epochs of the tiny model. Measured held-out MetaVoter
PLCC ~0.89 on model_core directly with exact labels (150 images, 10 epochs); 100 images with noisier annotators
gave 0.66; with 10 epochs four runs gave 0.73-0.85 (the task order, hence which noise lands where, differs run to
run), so 14 epochs for margin.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from aesplatform.annotation.models import Task
from aesplatform.catalog.models import Image
from aesplatform.modeling.demo import run_loop
from aesplatform.modeling.models import Prescore
from tests import factories
from tests.conftest import _api_client

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_the_whole_loop_on_synthetic_images(celery_worker, settings, capsys):
    settings.AESP_TRAINING_ROOT = Path(settings.VAR_DIR) / "training" / uuid.uuid4().hex[:8]
    curator = factories.curator()
    annotators = [factories.annotator() for _ in range(3)]
    lines: list[str] = []
    figures = run_loop(curator_api=_api_client(curator), annotators=[(a, _api_client(a)) for a in annotators],
                       incoming=Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0]), n_images=200, epochs=14,
                       say=lines.append)
    n = figures["n_images"]
    assert n == 200 and figures["ratings"] == 2 * n
    assert Image.objects.filter(status__in=["approved", "in_campaign"]).count() == n
    assert figures["export"]["state"] == "succeeded"
    job = figures["training_job"]
    assert f"training data: {figures['export']['path']}/train.jsonl" in job["log"]  # it trained on the export
    assert job["loss_curve"] and job["step"] == job["total_steps"] and job["state"] == "succeeded"
    assert figures["heldout_plcc"] >= 0.7, figures["model"]["metrics"]["overall"]
    assert (Path(figures["model"]["report_dir"]) / "report.json").is_file()
    assert figures["prescore_run"]["processed"] == figures["prescore_run"]["total"] == n
    assert Prescore.objects.filter(model_version_id=figures["model"]["id"]).count() == n
    assert figures["prescore_truth_plcc"] >= 0.7
    # the campaign asked for the active order; the promoted model's pre-scores re-ordered its (all done) tasks
    assert Task.objects.filter(campaign_id=figures["campaign"]).count() == n
    assert [s[0] for s in figures["stages"]] == ["import", "filter + approve", "campaign + annotators + consensus",
                                                 "dataset version + export", "training", "promote + pre-score"]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
        print(json.dumps({"heldout_plcc": round(figures["heldout_plcc"], 3), "stages": figures["stages"]}))
