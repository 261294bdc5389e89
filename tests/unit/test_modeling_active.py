"""Active learning: informativeness (head disagreement + uncertainty), diversity over embeddings, and the task
order of a campaign with task_order "active" (random stays available)."""

from __future__ import annotations

import numpy as np
import pytest

from aesplatform.annotation.models import Task
from aesplatform.modeling.active import informativeness, order_by_informativeness
from aesplatform.modeling.models import ModelVersion, Prescore
from tests import factories


def test_disagreement_and_uncertainty_both_raise_informativeness():
    estimates = np.array([[0.5, 0.5, 0.5], [0.2, 0.5, 0.8], [0.5, 0.5, 0.5], [0.1, 0.5, 0.9]])
    uncertainty = np.array([0.0, 0.1, 0.9, 0.8])
    info = informativeness(estimates, uncertainty)
    assert int(np.argmax(info)) == 3  # high on both
    assert info[0] == 0.0 and info[1] > info[0] and info[2] > info[0]


def test_diversity_spreads_the_first_picks_over_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:2]
    emb = np.concatenate([centres[0] + rng.normal(0, 0.01, (5, 4)), centres[1] + rng.normal(0, 0.01, (5, 4))])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    info = np.array([1.0, 0.99, 0.98, 0.97, 0.96, 0.5, 0.49, 0.48, 0.47, 0.46])
    plain = order_by_informativeness(info)
    diverse = order_by_informativeness(info, emb, diversity_weight=0.5)
    assert list(plain[:2]) == [0, 1]
    assert diverse[0] == 0 and diverse[1] >= 5  # the second pick comes from the other cluster
    assert sorted(diverse) == list(range(10))


@pytest.mark.django_db
def test_active_campaign_tasks_follow_informativeness_and_random_ones_are_refused(curator_client, annotator_client,
                                                                                  curator_user, tmp_path):
    images = [factories.ImageFactory(status="approved") for _ in range(6)]
    model = ModelVersion.objects.create(name="m", checkpoint_path=str(tmp_path), promoted=True)
    spreads = [0.0, 0.3, 0.1, 0.0, 0.2, None]  # head disagreement; the last image is not pre-scored
    for image, spread in zip(images, spreads):
        if spread is None:
            continue
        row = Prescore(image=image, model_version=model, lm_score=0.5 - spread, regression_score=0.5 + spread,
                       metavoter_score=0.5, uncertainty=spread)
        row.set_scores({"comprehensive": 0.5})
        row.save()
    active = factories.CampaignFactory(task_order="active", created_by=curator_user)
    random_order = factories.CampaignFactory(task_order="random", created_by=curator_user)
    for image in images:
        Task.objects.create(campaign=active, image=image)
        Task.objects.create(campaign=random_order, image=image)
    response = curator_client.post(f"/api/campaigns/{active.pk}/active-priorities/")
    assert response.status_code == 200 and response.json()["reordered_tasks"] == 6
    order = list(Task.objects.filter(campaign=active).order_by("-priority").values_list("image_id", flat=True))
    assert order[:2] == [images[1].pk, images[4].pk] and order[-1] == images[5].pk
    assert curator_client.post(f"/api/campaigns/{random_order.pk}/active-priorities/").status_code == 409
    assert annotator_client.post(f"/api/campaigns/{active.pk}/active-priorities/").status_code == 403
    ModelVersion.objects.update(promoted=False)
    response = curator_client.post(f"/api/campaigns/{active.pk}/active-priorities/")
    assert response.status_code == 409 and response.json()["code"] == "no_promoted_model"


@pytest.mark.django_db
def test_new_active_campaign_starts_in_the_promoted_models_order_and_ignores_other_models(curator_user, tmp_path):
    from aesplatform.annotation import services as annotation_services

    images = [factories.ImageFactory(status="approved") for _ in range(4)]
    promoted = ModelVersion.objects.create(name="promoted", checkpoint_path=str(tmp_path), promoted=True)
    older = ModelVersion.objects.create(name="older", checkpoint_path=str(tmp_path / "older"))
    # the promoted model finds images[2] the most informative; the other model (scored first) would put images[0]
    for model, spreads in ((older, [0.4, 0.0, 0.0, 0.0]), (promoted, [0.0, 0.1, 0.3, 0.0])):
        for image, spread in zip(images, spreads):
            row = Prescore(image=image, model_version=model, lm_score=0.5 - spread, regression_score=0.5 + spread,
                           metavoter_score=0.5, uncertainty=spread)
            row.set_scores({"comprehensive": 0.5})
            row.save()
    campaign = annotation_services.campaign_create(
        name="c", mode="overall", created_by=curator_user, image_ids=[i.pk for i in images],
        task_order="active", gold_ratio=0.0, seed=3)
    order = list(Task.objects.filter(campaign=campaign).order_by("-priority").values_list("image_id", flat=True))
    assert order[:2] == [images[2].pk, images[1].pk]
