"""Modeling pages: curators and admins only; training job form (bad input: 4xx with the reason, nothing created),
job page with the live fragment and the loss curve chart, model page with its report, promote (and its refusals),
compare, pre-scores with histograms."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from aesplatform.modeling.models import ModelVersion, Prescore, PrescoreRun, TrainingJob
from tests.support.modeling import draft_version, frozen_version, logged_in_client, synthetic_images

pytestmark = pytest.mark.django_db

REPORT = {"overall": {h: {"plcc": 0.8 + i / 100, "srcc": 0.7, "krcc": 0.5, "rmse": 0.1, "mae": 0.08, "n": 20}
                      for i, h in enumerate(("lm", "regression", "expert", "metavoter"))},
          "dimensions": {"comprehensive": {"plcc": 0.75, "srcc": 0.7, "n": 10}},
          "reference": {"metavoter": {"plcc_abs": 0.8123, "srcc_abs": 0.7, "krcc_abs": 0.5, "rmse_ref": 0.1001,
                                      "rmae_ref": 0.2829, "accuracy_ref": 0.6, "mean_precision_ref": 0.55,
                                      "mean_recall_ref": None, "mean_f1_ref": 0.5, "n": 20}},
          "meta": {"protocol": "reference", "max_tiles": 12},
          "holdout": {"overall_plcc": {"lm": 0.61, "metavoter": 0.6789}, "n": 9,
                      "metavoter_measured": {"method": "cross_fit", "folds": 5, "n": 9}}}


@pytest.fixture
def curator(curator_user):
    return logged_in_client(curator_user)


@pytest.fixture
def world(curator_user, tmp_path):
    version = frozen_version(synthetic_images(4), user=curator_user)
    job = TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator_user,
                                     state="running", step=3, total_steps=10, loss=0.42, eta_seconds=12.0,
                                     loss_curve=[[1, 0.9], [2, 0.6], [3, 0.42]], log="step 3/10 loss=0.42")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "scatter.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    model = ModelVersion.objects.create(name="candidate", checkpoint_path=str(tmp_path), metrics=REPORT,
                                        report_dir=str(tmp_path / "eval"), dataset_version=version)
    promoted = ModelVersion.objects.create(name="current", checkpoint_path=str(tmp_path), promoted=True,
                                           metrics={"overall": {"metavoter": {"plcc": 0.7, "srcc": 0.6, "rmse": 0.2}}})
    for item in version.items.all():
        row = Prescore(image=item.image, model_version=promoted, lm_score=0.2, regression_score=0.4,
                       metavoter_score=0.3 + item.pk % 3 / 10, uncertainty=0.1)
        row.save()
    return {"version": version, "job": job, "model": model, "promoted": promoted}


def _pages(world):
    job, model = world["job"], world["model"]
    return [reverse("ui:training_job_new"), reverse("ui:training_job", args=[job.pk]),
            reverse("ui:training_job_live", args=[job.pk]), reverse("ui:model_detail", args=[model.pk]),
            reverse("ui:model_compare", args=[model.pk]), reverse("ui:model_plot", args=[model.pk, "scatter.png"]),
            reverse("ui:prescores")]


def test_pages_are_for_curators_and_admins(world, annotator_user, admin_user, curator):
    annotator, admin = logged_in_client(annotator_user), logged_in_client(admin_user)
    for url in _pages(world):
        assert annotator.get(url).status_code == 403, url
        assert Client().get(url).status_code == 302, url
        assert curator.get(url).status_code == 200, url
        assert admin.get(url).status_code == 200, url
    for url in (reverse("ui:training_job_cancel", args=[world["job"].pk]),
                reverse("ui:model_promote", args=[world["model"].pk]), reverse("ui:prescore_run_new")):
        assert annotator.post(url).status_code == 403, url


def test_job_page_shows_live_progress_and_the_loss_curve(world, curator):
    job = world["job"]
    page = curator.get(reverse("ui:training_job", args=[job.pk])).content.decode()
    assert 'data-testid="loss-curve"' in page and 'data-chart="chart-loss-data"' in page and "3 / 10 (30%)" in page
    assert f'hx-get="{reverse("ui:training_job_live", args=[job.pk])}"' in page and "12 s" in page
    assert "<script" not in page.split("</head>")[1] or "nonce" not in page  # no inline scripts added by us
    TrainingJob.objects.filter(pk=job.pk).update(state="succeeded", step=10)
    fragment = curator.get(reverse("ui:training_job_live", args=[job.pk])).content.decode()
    assert "hx-get" not in fragment and 'data-state="succeeded"' in fragment  # stops polling once finished


def test_job_form_starts_a_job_and_refuses_bad_input(world, curator, curator_user):
    url = reverse("ui:training_job_new")
    before = TrainingJob.objects.count()
    response = curator.post(url, {"dataset_version": draft_version(curator_user).pk, "preset": "tiny-cpu"})
    assert response.status_code == 400  # drafts are not offered
    response = curator.post(url, {"dataset_version": world["version"].pk, "preset": "1B-LoRA"})
    assert response.status_code == 400 and b"backbone_path" in response.content
    assert TrainingJob.objects.count() == before
    response = curator.post(url, {"dataset_version": world["version"].pk, "preset": "tiny-cpu", "max_steps": 3})
    job = TrainingJob.objects.latest("id")
    assert response.status_code == 302 and response.url == reverse("ui:training_job", args=[job.pk])
    assert job.config["train"]["max_steps"] == 3
    # cancel it from its page; cancelling again is refused with the reason
    assert curator.post(reverse("ui:training_job_cancel", args=[job.pk])).status_code == 302
    response = curator.post(reverse("ui:training_job_cancel", args=[job.pk]))
    assert response.status_code == 409 and b"only pending or running" in response.content


def test_model_page_compare_and_promote(world, curator, curator_user):
    model = world["model"]
    page = curator.get(reverse("ui:model_detail", args=[model.pk])).content.decode()
    assert 'data-testid="model-report"' in page and "0.830" in page and "Comprehensive" in page
    assert reverse("ui:model_plot", args=[model.pk, "scatter.png"]) in page and "replaces current" in page
    # the reference script's metrics, labelled as such, and the held-out figures with how they were measured
    reference = page.split('data-testid="reference-report"')[1].split("</table>")[0]
    assert "|PLCC|" in reference and "0.8123" in reference and "not available" in reference
    assert '"mse" √(MSE+1e-8)' in page.replace("&quot;", '"') and "Protocol reference, 12 tiles" in page
    holdout = page.split('data-testid="holdout-report"')[1].split("</table>")[0]
    assert "0.679" in holdout and "cross-fitted (5 folds)" in page
    assert curator.get(reverse("ui:model_plot", args=[model.pk, "secret.txt"])).status_code == 404
    compare = curator.get(reverse("ui:model_compare", args=[model.pk])).content.decode()
    assert 'data-testid="compare-b">current' in compare and "<strong>0.830</strong>" in compare
    assert curator.post(reverse("ui:model_promote", args=[model.pk])).status_code == 302
    assert list(ModelVersion.objects.filter(promoted=True)) == [model]
    failed = TrainingJob.objects.create(dataset_version=world["version"], preset="tiny-cpu", created_by=curator_user,
                                        state="failed")
    bad = ModelVersion.objects.create(name="bad", training_job=failed, checkpoint_path=model.checkpoint_path)
    response = curator.post(reverse("ui:model_promote", args=[bad.pk]))
    assert response.status_code == 409 and b"only a model of a succeeded job" in response.content
    assert list(ModelVersion.objects.filter(promoted=True)) == [model]


def test_prescores_page_histograms_sorting_and_runs(world, curator):
    page = curator.get(reverse("ui:prescores") + "?order=metavoter_score").content.decode()
    assert page.count('data-testid="histogram"') == 4 and page.count('data-testid="mv"') == 4
    values = [float(v.split("<")[0]) for v in page.split('data-testid="mv">')[1:]]
    assert values == sorted(values)
    response = curator.post(reverse("ui:prescore_run_new"), {"max_tiles": 1, "batch_size": 8})
    assert response.status_code == 400 and b"No approved images" in response.content
    from aesplatform.catalog.models import Image

    Image.objects.update(status="approved")
    response = curator.post(reverse("ui:prescore_run_new"), {"max_tiles": 1, "batch_size": 8})
    assert response.status_code == 302 and PrescoreRun.objects.count() == 1
    ModelVersion.objects.update(promoted=False)
    response = curator.post(reverse("ui:prescore_run_new"), {"max_tiles": 1, "batch_size": 8})
    assert response.status_code == 409 and b"No model is promoted" in response.content
    assert PrescoreRun.objects.count() == 1


def test_models_list_links_to_the_new_pages(world, curator):
    page = curator.get(reverse("ui:models")).content.decode()
    for url in (
        reverse("ui:training_job_new"),
        reverse("ui:prescores"),
        reverse("ui:model_detail", args=[world["model"].pk]),
        reverse("ui:training_job", args=[world["job"].pk]),
    ):
        assert url in page


def test_compare_never_opens_a_model_against_itself(world, curator, tmp_path):
    model, promoted = world["model"], world["promoted"]

    def compared(pk, query=""):
        page = curator.get(reverse("ui:model_compare", args=[pk]) + query).content.decode()
        b = page.split('data-testid="compare-b">')[1].split("</span>")[0]
        return page, b

    # a candidate opens against the promoted model
    assert compared(model.pk)[1] == "current"
    # the promoted model opens against the model registered before it, not itself
    page, b = compared(promoted.pk)
    assert b == "candidate" and '<option value="%d"' % promoted.pk not in page
    # asking for the same model on both sides shows the choice instead of a table
    page, b = compared(model.pk, f"?with={model.pk}")
    assert b == "—" and 'data-testid="compare-table"' not in page and "Choose a model to compare candidate" in page
    # a single model: nothing to compare with, said so
    ModelVersion.objects.exclude(pk=model.pk).delete()
    page, b = compared(model.pk)
    assert b == "—" and 'data-testid="compare-form"' not in page and "There is no other model yet" in page


def test_model_list_and_model_page_link_to_compare(world, curator):
    model, promoted = world["model"], world["promoted"]
    listing = curator.get(reverse("ui:models")).content.decode()
    assert listing.count('data-testid="compare-link"') == 2
    assert reverse("ui:model_compare", args=[model.pk]) in listing
    page = curator.get(reverse("ui:model_detail", args=[promoted.pk])).content.decode()
    assert reverse("ui:model_compare", args=[promoted.pk]) in page and "Compare with another model" in page
    ModelVersion.objects.exclude(pk=model.pk).delete()
    assert 'data-testid="compare-link"' not in curator.get(reverse("ui:models")).content.decode()
    assert 'data-testid="compare"' not in curator.get(reverse("ui:model_detail", args=[model.pk])).content.decode()


def test_prescore_sort_orders_are_shown_in_words(world, curator):
    page = curator.get(reverse("ui:prescores")).content.decode()
    assert "MetaVoter score, high to low" in page and "Uncertainty, low to high" in page
    assert ">-metavoter_score<" not in page


def test_job_form_asks_for_processes_within_the_setting_and_the_job_page_shows_them(world, curator, settings):
    settings.AESP_TRAINING_MAX_PROCESSES = 2
    url = reverse("ui:training_job_new")
    page = curator.get(url).content.decode()
    assert 'name="processes"' in page and 'max="2"' in page and "1 to 2 here" in page
    before = TrainingJob.objects.count()
    response = curator.post(url, {"dataset_version": world["version"].pk, "preset": "tiny-cpu", "processes": 3})
    assert response.status_code == 400 and b"between 1 and 2" in response.content
    assert TrainingJob.objects.count() == before
    response = curator.post(url, {"dataset_version": world["version"].pk, "preset": "tiny-cpu", "processes": 2})
    job = TrainingJob.objects.latest("id")
    assert response.status_code == 302 and job.config["processes"] == 2
    assert "· 2 processes ·" in curator.get(reverse("ui:training_job", args=[job.pk])).content.decode()
