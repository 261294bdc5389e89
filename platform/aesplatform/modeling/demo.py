"""The whole loop on synthetic images, through the platform's API (DRF views, serializers, permissions, services)
and whatever Celery worker serves the `cpu` and `gpu` queues:

import -> filter -> approve -> campaign -> simulated annotators -> consensus -> dataset version -> export ->
training job -> model version (held-out PLCC) -> promote (only when no person promoted a model) -> pre-score.

Used by `manage.py demo_loop` (and `make demo-loop`) and by the loop integration test, so what the test checks
is what the command runs. The annotators are oracles: the synthetic truth + a bias of their own + noise.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from model_core import formats
from model_core.standard import DIMENSIONS

PIXEL_ONLY = {"clip": {"person_subject": None, "single_person": None, "photograph": None, "quality_problems": None},
              "min_faces": 0, "max_faces": 10, "near_duplicate_cosine": 0.999}
TINY_CLIP = {"clip_model_name": "AESP-Tiny-CLIP", "clip_checkpoint": ""}


class LoopError(RuntimeError):
    pass


def _state(data: dict) -> str:
    state = data["state"]
    return state["value"] if isinstance(state, dict) else state


def wait_done(api, url: str, *, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = api.get(url).json()
        state = _state(data)
        if state == "succeeded":
            return data
        if state in ("failed", "cancelled"):
            raise LoopError(f"{what} ended {state}: {json.dumps(data)[:2000]}")
        time.sleep(0.5)
    raise LoopError(f"{what} did not finish in {timeout:.0f} s (is a worker serving the cpu and gpu queues?)")


def _ok(response, *codes: int) -> dict:
    if response.status_code not in (codes or (200, 201)):
        raise LoopError(f"{response.status_code} from the API: {response.content[:2000]!r}")
    return response.json() if response.content else {}


def simulated_annotators(clients, campaign_id: int, truth: dict[int, list[float]], *, seed: int = 0,
                         noise: float = 0.03, bias: float = 0.01) -> int:
    """Oracle annotators, round-robin until the campaign has nothing left for any of them."""
    from aesplatform.annotation.models import Assignment

    rng = np.random.default_rng(seed)
    offsets = {i: rng.normal(0, bias) for i in range(len(clients))}
    active, submitted = set(range(len(clients))), 0
    while active:
        for i in sorted(active):
            response = clients[i].post(f"/api/campaigns/{campaign_id}/next-task/", {}, format="json")
            if response.status_code == 204:
                active.discard(i)
                continue
            task = _ok(response, 200)
            image_id = Assignment.objects.values_list("task__image_id", flat=True).get(pk=task["id"])
            noisy = np.clip(np.array(truth[image_id]) + offsets[i] + rng.normal(0, noise, 12), 0, 1)
            scores = {d.key: round(float(v), 4) for d, v in zip(DIMENSIONS, noisy) if d.key in task["dimensions"]}
            _ok(clients[i].post(f"/api/assignments/{task['id']}/submit/",
                                {"scores": scores, "idempotency_key": str(uuid.uuid4()), "time_spent_ms": 1500},
                                format="json"), 200, 201)
            submitted += 1
    return submitted


def simulated_user(name: str, role):
    """The loop's account `name` (created without a password if missing) with `role`, in the simulated group that
    annotator pickers leave out."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from aesplatform.accounts.roles import SIMULATED_GROUP

    account, created = get_user_model().objects.get_or_create(username=name)
    if created:
        account.set_unusable_password()
        account.save()
    account.groups.add(Group.objects.get_or_create(name=str(role))[0],
                       Group.objects.get_or_create(name=SIMULATED_GROUP)[0])
    return account


def promote_unless_a_person_chose(api, *, model_id: int) -> tuple[bool, str]:
    """Promote the loop's model only when no model is promoted, or when the promoted one was promoted by a simulated
    account (an earlier loop run): a model a person promoted stays promoted. Returns (promoted?, what was done)."""
    from aesplatform.accounts.roles import SIMULATED_GROUP
    from aesplatform.modeling.selectors import model_version_promoted

    current = model_version_promoted()
    if current is not None and current.pk != model_id:
        by = current.promoted_by
        if by is None or not by.groups.filter(name=SIMULATED_GROUP).exists():
            return False, (f"not promoted: {current.name} stays promoted (promoted by "
                           f"{by.get_username() if by else 'an unknown user'})")
    model = _ok(api.post(f"/api/model-versions/{model_id}/promote/"), 200)
    return True, f"{model['name']} promoted" + (f" (replacing the loop's {current.name})" if current and
                                                 current.pk != model_id else "")


def run_loop(*, curator_api, annotators: list[tuple], incoming: Path, n_images: int = 200, epochs: float = 10,
             redundancy: int = 2, seed: int = 3, timeout_scale: float = 1.0,
             say: Callable[[str], None] = print) -> dict:
    """Run every stage (`annotators`: (user, API client) pairs); returns the figures (stage times, ids, held-out PLCC,
    pre-score agreement)."""
    from aesplatform.annotation.models import Consensus
    from aesplatform.catalog.models import Image
    from aesplatform.modeling.models import Prescore
    from model_core.synthetic import write_humanbeauty

    api = curator_api
    started = time.monotonic()
    stages: list[list] = []

    def stage(name: str, detail: str) -> None:
        stages.append([name, round(time.monotonic() - started, 1)])
        say(f"[{stages[-1][1]:7.1f} s] {name}: {detail}")

    # 1. import
    root = incoming / f"loop-{uuid.uuid4().hex[:8]}"
    write_humanbeauty(root, n_overall=0, n_expert=n_images, seed=seed, size=(64, 64), test_fraction=0.0)
    expert_dir = root / formats.DIR_50K
    with open(expert_dir / formats.LABEL_FILE, encoding="utf-8") as handle:
        truth_by_name = {record["image_name"]: record["score"] for _, record in formats.iter_jsonl(handle)}
    job = _ok(api.post("/api/imports/", {"kind": "folder", "path": str(expert_dir / formats.IMAGES_DIR),
                                         "source_name": "synthetic-loop"}, format="multipart"), 201)
    job = wait_done(api, f"/api/imports/{job['id']}/", timeout=300 * timeout_scale, what="the import")
    images = dict(Image.objects.filter(import_job_id=job["id"]).values_list("pk", "original_name"))
    if len(images) < n_images:
        say(f"note: {n_images - len(images)} of the images were in the catalog already (same seed as an earlier "
            "run); the loop goes on with the new ones")
    if len(images) < 8:
        raise LoopError(f"only {len(images)} new images were imported; run again with another --seed")
    truth = {pk: truth_by_name[name] for pk, name in images.items()}
    stage("import", f"{job['imported_count']} synthetic images from {root}")

    # 2. filter + approve
    run = _ok(api.post("/api/filter-runs/", {"import_job": job["id"], "thresholds": PIXEL_ONLY, "batch_size": 32,
                                             "review_batch_size": 50, **TINY_CLIP}, format="json"), 201)
    wait_done(api, f"/api/filter-runs/{run['id']}/", timeout=300 * timeout_scale, what="the filter run")
    approved = 0
    for batch in _ok(api.get(f"/api/filter-runs/{run['id']}/batches/"))["results"]:
        detail = _ok(api.get(f"/api/review-batches/{batch['id']}/"))
        decisions = [{"image": r["image"], "decision": "approve"} for r in detail["results"]]
        _ok(api.post(f"/api/review-batches/{batch['id']}/decide/", {"decisions": decisions}, format="json"), 200)
        approved += len(decisions)
    stage("filter + approve", f"filter run {run['id']}, {approved} images approved by the curator")

    # 3. campaign + annotators + consensus (the worker computes it)
    annotator_ids = [user.pk for user, _ in annotators]
    annotator_apis = [client for _, client in annotators]
    campaign = _ok(api.post("/api/campaigns/", {"name": f"loop {root.name}", "mode": "expert",
                                                "image_ids": sorted(images), "redundancy": redundancy,
                                                "annotators": annotator_ids, "state": "active",
                                                "task_order": "active"}, format="json"), 201)
    submitted = simulated_annotators(annotator_apis, campaign["id"], truth, seed=seed)
    deadline = time.monotonic() + 180 * timeout_scale
    while Consensus.objects.filter(campaign_id=campaign["id"], count__gte=redundancy).count() < 12 * len(images):
        if time.monotonic() > deadline:
            raise LoopError("the worker did not compute the consensus of every image in time")
        time.sleep(0.5)
    stage("campaign + annotators + consensus",
          f"campaign {campaign['id']}: {submitted} ratings by {len(annotator_apis)} simulated annotators")

    # 4. dataset version + export
    version = _ok(api.post("/api/dataset-versions/", {"name": f"loop-{root.name}", "campaigns": [campaign["id"]],
                                                      "kind": "expert", "include_imported_labels": False,
                                                      "test_ratio": 0.25, "freeze": True}, format="json"), 201)
    export = _ok(api.post("/api/exports/", {"version": version["id"], "format": "training_jsonl",
                                            "options": {"archive": False}}, format="json"), 201)
    export = wait_done(api, f"/api/exports/{export['id']}/", timeout=300 * timeout_scale, what="the export")
    stage("dataset version + export", f"version {version['id']} ({version['counts']['total']} images, frozen), "
          f"export {export['id']} at {export['path']}")

    # 5. training
    trained = _ok(api.post("/api/training-jobs/", {"dataset_version": version["id"], "preset": "tiny-cpu",
                                                   "config": {"epochs": epochs}}, format="json"), 201)
    trained = wait_done(api, f"/api/training-jobs/{trained['id']}/", timeout=900 * timeout_scale,
                        what="the training job")
    model = _ok(api.get(f"/api/model-versions/{trained['model_version']}/"))
    plcc = model["metrics"]["overall"]["metavoter"]["plcc"]
    stage("training", f"job {trained['id']}: {trained['step']} steps, final loss {trained['loss']:.4f}; model "
          f"{model['name']} held-out PLCC MetaVoter {plcc:.3f}")

    # 6. promote (unless a person promoted a model) + pre-score with the loop's model
    promoted, promotion = promote_unless_a_person_chose(api, model_id=model["id"])
    prescore = _ok(api.post("/api/prescore-runs/", {"batch_size": 32, "model_version": model["id"]}, format="json"),
                   201)
    prescore = wait_done(api, f"/api/prescore-runs/{prescore['id']}/", timeout=300 * timeout_scale,
                         what="the pre-scoring run")
    scored = dict(Prescore.objects.filter(model_version_id=model["id"]).values_list("image_id", "metavoter_score"))
    ids = sorted(set(scored) & set(truth))
    agreement = (
        float(np.corrcoef([scored[i] for i in ids], [truth[i][-1] for i in ids])[0, 1]) if len(ids) > 2 else None
    )
    stage("promote + pre-score", f"{promotion}; run {prescore['id']} scored {prescore['processed']} "
          f"images with {model['name']} (PLCC with the synthetic truth {agreement:.3f})"
          + (f"; campaign {campaign['id']} tasks re-ordered" if promoted else ""))
    return {"stages": stages, "import_job": job["id"], "n_images": len(images), "campaign": campaign["id"],
            "ratings": submitted, "dataset_version": version["id"], "export": export, "training_job": trained,
            "model": model, "promoted": promoted, "promotion": promotion,
            "heldout_plcc": plcc, "prescore_run": prescore, "prescored": len(scored),
            "prescore_truth_plcc": agreement}
