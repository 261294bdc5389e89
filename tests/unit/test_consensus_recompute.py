"""A campaign's consensus method (issue 18): stored on every consensus row and in the raters' estimates, chosen at
creation and changed later through the service, the API and the dashboard (a recomputation queued after the
commit), recomputation idempotent, dataset versions taking the campaigns' method."""

from __future__ import annotations

import importlib
import uuid

import numpy as np
import pytest
from django.apps import apps
from django.test import Client
from rest_framework.test import APIClient

from aesplatform.annotation import consensus, services
from aesplatform.annotation.models import Campaign, Consensus, RaterStats
from aesplatform.common.exceptions import ServiceError
from aesplatform.datasets import services as dataset_services
from model_core.standard import OVERALL
from tests import factories
from tests.support.annotation import campaign_for
from tests.support.datasets import label_campaign

pytestmark = pytest.mark.django_db

IMAGES = 12


@pytest.fixture
def rated():
    """12 images rated by three annotators each: a lenient one (+0.1), a careful one, and one at random."""
    users = [factories.annotator(username=name) for name in ("lenient", "careful", "random")]
    campaign = campaign_for(users, images=IMAGES, redundancy=3)
    rng = np.random.default_rng(0)
    truth = {}
    for user in users:
        for _ in range(IMAGES):
            lease = services.task_lease_next(campaign=campaign, annotator=user)
            t = truth.setdefault(lease.task.image_id, float(rng.uniform(0.2, 0.7)))
            value = {"lenient": t + 0.1 + rng.normal(0, 0.02), "careful": t + rng.normal(0, 0.02),
                     "random": rng.uniform(0, 1)}[user.username]
            services.annotation_submit(assignment_id=lease.id, annotator=user,
                                       scores={OVERALL.key: float(np.clip(value, 0, 1))}, idempotency_key=uuid.uuid4())
    return campaign, users


def _rows(campaign):
    return list(Consensus.objects.filter(campaign=campaign).order_by("image_id", "dimension").values_list(
        "pk", "image_id", "method", "score", "count", "std", "ci_low", "ci_high", "rejected_annotators"))


def _stats(campaign):
    return list(RaterStats.objects.filter(campaign=campaign).order_by("annotator_id", "dimension").values_list(
        "annotator__username", "method", "ratings", "bias", "bias_ci_low", "bias_ci_high", "inconsistency",
        "inconsistency_ci_low", "inconsistency_ci_high", "weight", "modelled", "rejected", "downweighted", "drift"))


def test_new_campaigns_use_the_default_method_and_rows_and_rater_estimates_record_it(rated):
    campaign, users = rated
    assert campaign.consensus_method == consensus.DEFAULT_METHOD == "p910_mle"
    services.consensus_update_for_campaign(campaign=campaign)
    rows = _rows(campaign)
    assert len(rows) == IMAGES and {r[2] for r in rows} == {"p910_mle"}
    stats = {s[0]: s for s in _stats(campaign)}
    assert set(stats) == {"lenient", "careful", "random"}
    lenient, careful, spammer = stats["lenient"], stats["careful"], stats["random"]
    assert lenient[1] == "p910_mle" and lenient[2] == IMAGES and lenient[10]  # modelled
    assert lenient[3] > careful[3]  # the lenient rater's bias is the higher
    assert lenient[4] < lenient[3] < lenient[5]  # inside its interval
    assert spammer[12] and not lenient[12] and not careful[12]  # only the random rater is down-weighted
    drift = lenient[13]
    assert len(drift) == 1 and drift[0]["n"] == IMAGES and drift[0]["start"] <= drift[0]["end"]


def test_recomputation_is_idempotent(rated):
    campaign, _ = rated
    services.consensus_update_for_campaign(campaign=campaign)
    first_rows, first_stats = _rows(campaign), _stats(campaign)
    services.consensus_update_for_campaign(campaign=campaign)
    assert _rows(campaign) == first_rows and _stats(campaign) == first_stats


def test_changing_the_method_recomputes_after_the_commit_and_switching_back_restores_every_label(
    rated, monkeypatch, django_capture_on_commit_callbacks
):
    campaign, _ = rated
    services.consensus_update_for_campaign(campaign=campaign)
    before = _rows(campaign)
    sent = []
    monkeypatch.setattr(services, "task_send", lambda name, *args, **kw: sent.append((name, args)))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.campaign_update(campaign=campaign, data={"consensus_method": "mean"})
    assert not sent  # nothing is queued before the commit
    for callback in callbacks:
        callback()
    assert len(sent) == 1 and sent[0][0] == services.QUALITY_UPDATE_TASK
    campaign_id, requested_at = sent[0][1]
    assert campaign_id == campaign.id
    from django.utils.dateparse import parse_datetime

    assert services.consensus_update_if_stale(campaign_id=campaign.id, requested_at=parse_datetime(requested_at))
    after = _rows(campaign)
    assert [r[0] for r in after] == [r[0] for r in before]  # the same rows, rewritten
    assert {r[2] for r in after} == {"mean"} and {s[1] for s in _stats(campaign)} == {"mean"}
    matrix = services.campaign_matrices(campaign=Campaign.objects.get(pk=campaign.pk))["matrices"][OVERALL.index]
    assert [r[3] for r in after] == pytest.approx(list(np.nanmean(matrix, axis=1)))
    assert [r[3] for r in after] != pytest.approx([r[3] for r in before])

    with django_capture_on_commit_callbacks(execute=True):
        services.campaign_update(campaign=Campaign.objects.get(pk=campaign.pk), data={"consensus_method": "p910_mle"})
    services.consensus_update_for_campaign(campaign=Campaign.objects.get(pk=campaign.pk))
    assert _rows(campaign) == before


def test_an_unknown_method_is_refused_and_nothing_changes(rated, monkeypatch, django_capture_on_commit_callbacks):
    campaign, _ = rated
    sent = []
    monkeypatch.setattr(services, "task_send", lambda name, *args, **kw: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ServiceError, match="unknown consensus"):
        services.campaign_update(campaign=campaign, data={"consensus_method": "median"})
    assert Campaign.objects.get(pk=campaign.pk).consensus_method == "p910_mle" and not sent
    with pytest.raises(ServiceError, match="unknown consensus"):
        services.campaign_create(name="x", mode="overall", created_by=factories.curator(),
                                 image_ids=[factories.ImageFactory(status="approved").id], consensus_method="median")


def test_the_worker_catch_up_recomputes_a_campaign_whose_rows_are_of_another_method(rated, monkeypatch):
    campaign, _ = rated
    services.consensus_update_for_campaign(campaign=campaign)
    monkeypatch.setattr(services, "task_send", lambda *a, **kw: None)
    assert campaign.id not in services.consensus_catch_up()
    Campaign.objects.filter(pk=campaign.pk).update(consensus_method="bt500_mos")  # the queued update was lost
    assert campaign.id in services.consensus_catch_up()


def test_the_api_reads_and_changes_the_method_and_refuses_an_unknown_one(rated, monkeypatch):
    campaign, _ = rated
    monkeypatch.setattr(services, "task_send", lambda *a, **kw: None)
    api = APIClient()
    api.force_authenticate(factories.curator())
    assert api.get(f"/api/campaigns/{campaign.id}/").json()["consensus_method"] == "p910_mle"
    refused = api.patch(f"/api/campaigns/{campaign.id}/", {"consensus_method": "median"}, format="json")
    assert refused.status_code == 400 and Campaign.objects.get(pk=campaign.pk).consensus_method == "p910_mle"
    changed = api.patch(f"/api/campaigns/{campaign.id}/", {"consensus_method": "bt500_mos"}, format="json")
    assert changed.status_code == 200 and changed.json()["consensus_method"] == "bt500_mos"
    created = api.post("/api/campaigns/", {"name": "m", "mode": "overall", "consensus_method": "mean",
                                            "image_ids": [factories.ImageFactory(status="approved").id]},
                       format="json")
    assert created.status_code == 201, created.content
    assert Campaign.objects.get(pk=created.json()["id"]).consensus_method == "mean"


def test_the_dashboard_shows_the_raters_flags_the_random_one_and_links_to_their_ratings(rated, monkeypatch):
    campaign, users = rated
    services.consensus_update_for_campaign(campaign=campaign)
    browser = Client()
    browser.force_login(factories.curator())
    page = browser.get(f"/campaigns/{campaign.id}/").content.decode()
    assert 'data-testid="raters"' in page and 'data-testid="consensus-method-name"' in page
    spammer = users[2]
    row = page.split(f'data-testid="rater-{OVERALL.key}-random"')[1].split("</tr>")[0]
    assert 'data-testid="flag-downweighted"' in row
    assert f'href="/campaigns/{campaign.id}/review/?annotator={spammer.id}"' in row
    careful = page.split(f'data-testid="rater-{OVERALL.key}-careful"')[1].split("</tr>")[0]
    assert "flag-" not in careful and "model" in careful

    monkeypatch.setattr(services, "task_send", lambda *a, **kw: None)
    r = browser.post(f"/campaigns/{campaign.id}/consensus-method/", {"consensus_method": "bt500_mos"})
    assert r.status_code == 302 and Campaign.objects.get(pk=campaign.pk).consensus_method == "bt500_mos"
    page = browser.get(f"/campaigns/{campaign.id}/").content.decode()
    assert 'data-testid="raters-stale"' in page  # the estimates shown are still the old method's, said so
    r = browser.post(f"/campaigns/{campaign.id}/consensus-method/", {"consensus_method": "median"})
    assert Campaign.objects.get(pk=campaign.pk).consensus_method == "bt500_mos"
    annotator = Client()
    annotator.force_login(users[0])
    assert annotator.post(f"/campaigns/{campaign.id}/consensus-method/",
                          {"consensus_method": "mean"}).status_code in (302, 403)
    assert Campaign.objects.get(pk=campaign.pk).consensus_method == "bt500_mos"


def test_a_campaign_not_rated_yet_says_its_rater_estimates_are_not_available():
    campaign = campaign_for([factories.annotator()], images=2, redundancy=1)
    browser = Client()
    browser.force_login(factories.curator())
    assert 'data-testid="raters-none"' in browser.get(f"/campaigns/{campaign.id}/").content.decode()


def test_dataset_versions_take_the_campaigns_method_and_refuse_another(monkeypatch):
    curator = factories.curator()
    campaign = factories.CampaignFactory(mode="overall", consensus_method="bt500_mos")
    image = factories.ImageFactory(status="approved")
    label_campaign(image, campaign, scores={OVERALL.index: 0.6})
    version = dataset_services.dataset_version_create(created_by=curator, name="v", campaigns=[campaign],
                                                      include_imported_labels=False)
    assert version.consensus_method == "bt500_mos"
    with pytest.raises(ServiceError, match="makes its consensus with bt500_mos"):
        dataset_services.dataset_version_create(created_by=curator, name="w", campaigns=[campaign],
                                                consensus_method="p910_mle")
    other = factories.CampaignFactory(mode="overall", consensus_method="mean")
    with pytest.raises(ServiceError, match="different methods"):
        dataset_services.dataset_version_create(created_by=curator, name="w", campaigns=[campaign, other])
    # the method changed and its recomputation has not run yet: freezing would leave the labels out
    Campaign.objects.filter(pk=campaign.pk).update(consensus_method="mean")
    with pytest.raises(ServiceError, match="makes its consensus with mean"):
        dataset_services.dataset_version_freeze(version=version)
    with pytest.raises(ServiceError, match="being recomputed"):
        dataset_services.dataset_version_create(created_by=curator, name="x", campaigns=[
            Campaign.objects.get(pk=campaign.pk)], include_imported_labels=False)


def test_the_migration_keeps_existing_campaigns_and_rows_on_the_method_that_made_them():
    migration = importlib.import_module(
        "aesplatform.annotation.migrations.0003_consensus_methods_and_rater_stats")
    campaign = factories.CampaignFactory(mode="overall")
    image = factories.ImageFactory(status="approved")
    label_campaign(image, campaign, scores={OVERALL.index: 0.6})
    migration.existing_rows_keep_their_method(apps, None)
    assert Campaign.objects.get(pk=campaign.pk).consensus_method == "bt500"
    assert Consensus.objects.get(campaign=campaign).method == "p910_mle"  # a valid method stays as it is


def test_the_create_form_sets_the_method_and_defaults_to_the_bench_pick():
    curator = Client()
    curator.force_login(factories.curator())
    for _ in range(2):
        factories.ImageFactory(status="approved", source="set-m")
    form = {"name": "m", "mode": "overall", "redundancy": 1, "gold_ratio": 0, "image_source": "set-m",
            "image_limit": 1, "instructions": "", "task_order": "random", "lease_seconds": 600}
    assert 'name="consensus_method"' in curator.get("/campaigns/new/").content.decode()
    assert curator.post("/campaigns/new/", {**form, "consensus_method": "bt500_mos"}).status_code == 302
    assert curator.post("/campaigns/new/", {**form, "name": "n"}).status_code == 302
    assert dict(Campaign.objects.values_list("name", "consensus_method")) == {"m": "bt500_mos", "n": "p910_mle"}
