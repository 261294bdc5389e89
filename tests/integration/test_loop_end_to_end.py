"""Done means of issue 8: the whole loop on synthetic data through the API, with a real Celery worker (cpu and gpu
queues), PostgreSQL and Redis:

import -> filter -> approve -> campaign -> simulated annotators -> consensus -> dataset version -> export ->
tiny training job -> model version with held-out PLCC >= 0.7 -> promote -> pre-score.

Size: 200 synthetic expert images (150 train / 50 test), 10 epochs of the tiny model: measured held-out MetaVoter
PLCC ~0.89 on model_core directly with exact labels (150 images, 10 epochs); 100 images with annotator noise gave
0.66, too close to the bar; held-out labels are noisy consensus too, which caps the measurable PLCC.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from aesplatform.annotation.models import Assignment, Consensus
from aesplatform.modeling.models import Prescore
from model_core.standard import DIMENSIONS
from tests import factories
from tests.conftest import _api_client, wait_for
from tests.curation_support import tiny_run_kwargs

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

N_IMAGES = 200
PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.999}


def _wait_state(client, url, *, timeout, done=("succeeded",), what=""):
    def finished():
        data = client.get(url).json()
        state = data["state"]["value"] if isinstance(data["state"], dict) else data["state"]
        if state in ("failed", "cancelled") and state not in done:
            raise AssertionError(f"{what or url} ended {state}: {json.dumps(data)[:3000]}")
        return data if state in done else None

    return wait_for(finished, timeout=timeout, interval=0.5, message=what or url)


def simulated_annotators(clients, campaign_id: int, truth: dict[int, list[float]], *, seed: int = 0) -> int:
    """Oracle annotators: the true scores + their own bias + noise (sd 0.03; bias sd 0.01), clipped; round-robin until done."""
    rng = np.random.default_rng(seed)
    bias = {i: rng.normal(0, 0.01) for i in range(len(clients))}
    active, submitted = set(range(len(clients))), 0
    while active:
        for i in sorted(active):
            client = clients[i]
            response = client.post(f"/api/campaigns/{campaign_id}/next-task/", {}, format="json")
            if response.status_code == 204:
                active.discard(i)
                continue
            assert response.status_code == 200, response.content
            task = response.json()
            image_id = Assignment.objects.values_list("task__image_id", flat=True).get(pk=task["id"])
            noisy = np.clip(np.array(truth[image_id]) + bias[i] + rng.normal(0, 0.03, 12), 0, 1)
            scores = {d.key: round(float(v), 4) for d, v in zip(DIMENSIONS, noisy) if d.key in task["dimensions"]}
            done = client.post(f"/api/assignments/{task['id']}/submit/",
                               {"scores": scores, "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1500},
                               format="json")
            assert done.status_code in (200, 201), done.content
            submitted += 1
    return submitted


@pytest.mark.django_db(transaction=True)
def test_the_whole_loop_on_synthetic_images(celery_worker, settings, capsys):
    from model_core.synthetic import write_humanbeauty

    started = time.monotonic()
    stages: list[tuple[str, float]] = []

    def stage(name):
        stages.append((name, round(time.monotonic() - started, 1)))

    curator = factories.curator()
    api = _api_client(curator)
    annotators = [factories.annotator() for _ in range(3)]
    settings.AESP_TRAINING_ROOT = Path(settings.VAR_DIR) / "training" / uuid.uuid4().hex[:8]

    # 1. import a folder of synthetic images (their true scores stay with the oracle, not in the catalog)
    root = Path(settings.AESP_IMPORT["ALLOWED_ROOTS"][0]) / f"loop-{uuid.uuid4().hex[:8]}"
    write_humanbeauty(root, n_overall=0, n_expert=N_IMAGES, seed=3, size=(64, 64), test_fraction=0.0)
    truth_by_name = {json.loads(line)["image_name"]: json.loads(line)["score"]
                     for line in (root / "HumanBeauty-50K" / "label.jsonl").read_text().splitlines()}
    response = api.post("/api/imports/", {"kind": "folder", "path": str(root / "HumanBeauty-50K" / "images"),
                                          "source_name": "synthetic-loop"}, format="multipart")
    assert response.status_code == 201, response.content
    job = _wait_state(api, f"/api/imports/{response.json()['id']}/", timeout=180, what="the import")
    assert job["imported_count"] == N_IMAGES, job
    from aesplatform.catalog.models import Image

    images = {img.pk: img.original_name for img in Image.objects.filter(import_job_id=job["id"])}
    truth = {pk: truth_by_name[name] for pk, name in images.items()}
    stage("import")

    # 2. filter (tiny CLIP, pixel checks) and approve every review batch
    response = api.post("/api/filter-runs/", {"import_job": job["id"], "thresholds": PIXEL_ONLY, "batch_size": 32,
                                              "review_batch_size": 50, **tiny_run_kwargs()}, format="json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    _wait_state(api, f"/api/filter-runs/{run_id}/", timeout=240, what="the filter run")
    for batch in api.get(f"/api/filter-runs/{run_id}/batches/").json()["results"]:
        detail = api.get(f"/api/review-batches/{batch['id']}/").json()
        decisions = [{"image": r["image"], "decision": "approve"} for r in detail["results"]]
        assert api.post(f"/api/review-batches/{batch['id']}/decide/", {"decisions": decisions},
                        format="json").status_code == 200
    assert Image.objects.filter(pk__in=images, status="approved").count() == N_IMAGES
    stage("filter + approve")

    # 3. an expert campaign, rated twice per image by three simulated annotators; consensus by the worker
    response = api.post("/api/campaigns/", {"name": "loop", "mode": "expert", "image_ids": sorted(images),
                                            "redundancy": 2, "annotators": [a.pk for a in annotators],
                                            "state": "active"}, format="json")
    assert response.status_code == 201, response.content
    campaign_id = response.json()["id"]
    submitted = simulated_annotators([_api_client(a) for a in annotators], campaign_id, truth)
    assert submitted == 2 * N_IMAGES
    wait_for(lambda: Consensus.objects.filter(campaign_id=campaign_id, count__gte=2).count()
             == 12 * N_IMAGES, timeout=120, message="the worker's consensus of every image and dimension")
    stage("campaign + annotators + consensus")

    # 4. a frozen dataset version of the campaign and its training-jsonl export (cpu worker)
    response = api.post("/api/dataset-versions/", {"name": "loop", "campaigns": [campaign_id], "kind": "expert",
                                                   "include_imported_labels": False, "test_ratio": 0.25,
                                                   "freeze": True}, format="json")
    assert response.status_code == 201, response.content
    version = response.json()
    assert version["state"] == "frozen" and version["counts"]["total"] == N_IMAGES
    response = api.post("/api/exports/", {"version": version["id"], "format": "training_jsonl",
                                          "options": {"archive": False}}, format="json")
    assert response.status_code == 201, response.content
    export = _wait_state(api, f"/api/exports/{response.json()['id']}/", timeout=120, what="the export")
    stage("dataset version + export")

    # 5. a tiny training job on the gpu queue; the registered model's held-out PLCC
    response = api.post("/api/training-jobs/", {"dataset_version": version["id"], "preset": "tiny-cpu",
                                                "config": {"epochs": 10}}, format="json")
    assert response.status_code == 201, response.content
    trained = _wait_state(api, f"/api/training-jobs/{response.json()['id']}/", timeout=600, what="the training job")
    assert f"training data: {export['path']}/train.jsonl" in trained["log"]  # the export is what it trained on
    assert trained["loss_curve"] and trained["step"] == trained["total_steps"]
    model = api.get(f"/api/model-versions/{trained['model_version']}/").json()
    plcc = model["metrics"]["overall"]["metavoter"]["plcc"]
    assert plcc >= 0.7, model["metrics"]["overall"]
    assert (Path(model["report_dir"]) / "report.json").is_file()
    stage(f"training (held-out MetaVoter PLCC {plcc:.3f})")

    # 6. promote, then pre-score every approved image with the promoted model on the gpu queue
    assert api.post(f"/api/model-versions/{model['id']}/promote/").json()["promoted"] is True
    response = api.post("/api/prescore-runs/", {"batch_size": 32}, format="json")
    assert response.status_code == 201, response.content
    run = _wait_state(api, f"/api/prescore-runs/{response.json()['id']}/", timeout=180, what="the pre-scoring run")
    assert run["processed"] == run["total"] == N_IMAGES
    assert Prescore.objects.filter(model_version_id=model["id"]).count() == N_IMAGES
    scored = {p.image_id: p.metavoter_score for p in Prescore.objects.filter(model_version_id=model["id"])}
    agreement = np.corrcoef([scored[i] for i in sorted(scored)], [truth[i][-1] for i in sorted(scored)])[0, 1]
    assert agreement >= 0.7
    stage(f"promote + pre-score (PLCC with the truth over all images {agreement:.3f})")
    with capsys.disabled():
        print("\nloop stages (cumulative seconds):", json.dumps(stages))
