"""Figures too costly per request are stored and shown with their time (campaign counts and statistics, pre-score
histograms): exact as of then, brought up to date by the worker (the quality update after submits, the end of a
pre-scoring run), computed once where none were stored."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from aesplatform.annotation import services
from aesplatform.annotation.models import CampaignSnapshot
from tests import factories
from tests.support.annotation import campaign_for

pytestmark = pytest.mark.django_db


def _rate(campaign, user, n):
    for _ in range(n):
        lease = services.task_lease_next(campaign=campaign, annotator=user)
        services.annotation_submit(assignment_id=lease.pk, annotator=user, scores={"comprehensive": 0.5},
                                   idempotency_key=uuid.uuid4())


def _row(page: str, campaign) -> str:
    start = page.index(f'data-testid="campaign-link-{campaign.pk}"')
    return page[start: page.index("</tr>", start)]


def test_a_new_campaign_has_its_counts_stored_and_the_worker_brings_them_up_to_date():
    a, b = factories.annotator(), factories.annotator()
    campaign = campaign_for([a, b], images=3, redundancy=2)
    snapshot = CampaignSnapshot.objects.get(campaign=campaign)
    assert (snapshot.tasks, snapshot.tasks_done, snapshot.annotations) == (3, 0, 0)
    _rate(campaign, a, 2)
    _rate(campaign, b, 1)
    snapshot.refresh_from_db()
    assert snapshot.annotations == 0  # as of its time, until the worker recomputes
    services.consensus_update_for_campaign(campaign=campaign)  # what the worker runs after submits
    snapshot.refresh_from_db()
    assert (snapshot.tasks, snapshot.tasks_done, snapshot.annotations, snapshot.submitted) == (3, 1, 3, 3)
    assert [a["submitted"] for a in snapshot.stats["annotators"]] == [2, 1]

    curator = factories.curator()
    client = Client()
    client.force_login(curator)
    row = _row(client.get("/campaigns/").content.decode(), campaign)
    assert "1 / 3" in row and "as of" in row and '<td class="num">3</td>' in row
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="stats-as-of"' in page and 'data-testid="done-count">1<' in page


def test_campaigns_without_stored_counts_get_them_when_listed():
    a = factories.annotator()
    campaign = campaign_for([a], images=4, redundancy=1)
    _rate(campaign, a, 3)
    CampaignSnapshot.objects.all().delete()  # a campaign made before counts were stored
    client = Client()
    client.force_login(factories.curator())
    row = _row(client.get("/campaigns/").content.decode(), campaign)
    assert "3 / 4" in row
    snapshot = CampaignSnapshot.objects.get(campaign=campaign)
    assert (snapshot.tasks, snapshot.tasks_done, snapshot.annotations, snapshot.stats) == (4, 3, 3, None)
    # the dashboard computes the statistics once when there are none
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="done-count">3<' in page
    assert CampaignSnapshot.objects.get(campaign=campaign).stats is not None


def test_the_annotate_page_counts_open_tasks_up_to_a_bound(monkeypatch):
    from aesplatform.annotation import selectors

    a = factories.annotator()
    campaign = campaign_for([a], images=5, redundancy=1)
    client = Client()
    client.force_login(a)
    assert 'data-testid="count-remaining">5<' in client.get(f"/annotate/{campaign.pk}/").content.decode()
    monkeypatch.setattr(selectors, "REMAINING_COUNTED", 3)
    page = client.get(f"/annotate/{campaign.pk}/").content.decode()
    assert 'data-testid="count-remaining">more than 3<' in page


def test_the_prescores_page_shows_the_histograms_stored_when_a_run_ended():
    from aesplatform.modeling import services as modeling_services
    from aesplatform.modeling.models import ModelVersion, Prescore

    model = ModelVersion.objects.create(name="m", checkpoint_path="/nonexistent", promoted=True)
    images = [factories.ImageFactory() for _ in range(3)]
    Prescore.objects.bulk_create([Prescore(image=i, model_version=model, metavoter_score=0.99) for i in images[:2]])
    client = Client()
    client.force_login(factories.curator())
    client.get("/models/prescores/")  # none stored yet: computed once, stored
    model.refresh_from_db()
    assert sum(model.prescore_histograms["metavoter_score"]) == 2 and model.prescore_histograms_at is not None
    Prescore.objects.create(image=images[2], model_version=model, metavoter_score=0.01)
    assert 'data-testid="histograms-as-of"' in client.get("/models/prescores/").content.decode()
    model.refresh_from_db()
    assert sum(model.prescore_histograms["metavoter_score"]) == 2  # as of then, until a run ends
    modeling_services.prescore_histograms_refresh(model_version=model)  # what the end of a run does
    model.refresh_from_db()
    assert sum(model.prescore_histograms["metavoter_score"]) == 3


def test_a_finished_filter_runs_counts_are_kept_exact_through_proposals_and_decisions():
    from aesplatform.curation import selectors as curation_selectors
    from aesplatform.curation import services as curation_services
    from aesplatform.curation.models import ReviewBatch
    from tests.support.curation import PIXEL_ONLY, run_in_process
    from tests.support.scenes import stored_scenes, tiny_run_kwargs

    curator = factories.curator()
    images = stored_scenes(4)
    run = run_in_process(curation_services.filter_run_create(
        created_by=curator, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY, enqueue=False,
        **tiny_run_kwargs()))
    counted = curation_selectors.filter_run_counts_count(run=run)
    assert run.result_counts == counted and counted["scored"] == 4 and counted["approved"] == 0
    batch = ReviewBatch.objects.get(run=run)
    curation_services.review_batch_decide(batch=batch, decided_by=curator,
                                          decisions=[{"image": images[2].pk, "decision": "reject"}])
    run.refresh_from_db()
    assert run.result_counts == curation_selectors.filter_run_counts_count(run=run)
    assert (run.result_counts["approved"], run.result_counts["rejected"], run.result_counts["overrides"]) == (3, 1, 1)
    assert curation_selectors.filter_run_counts(run=run) == run.result_counts
