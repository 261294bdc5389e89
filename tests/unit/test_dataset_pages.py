"""Dataset pages: create and freeze a version, read its balance, export it, follow progress, download (Range);
curators only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from aesplatform.datasets import services
from aesplatform.datasets.models import DatasetVersion, Export
from tests import factories
from tests.support.datasets import labelled_set

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_root(settings, tmp_path):
    settings.AESP_EXPORT_ROOT = tmp_path / "exports"
    settings.AESP_EXPORT_ROOTS = []


@pytest.fixture
def curator_browser(client):
    client.force_login(factories.curator())
    return client


def _version_form(**overrides):
    data = {"name": "hb", "include_imported_labels": "on", "kind": "mixed", "min_ratings": 1, "split_seed": 3,
            "test_ratio": 0.2, "freeze": "on"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_create_freeze_export_and_download_through_the_pages(curator_browser, django_capture_on_commit_callbacks):
    labelled_set(8, 4, groups={0: 1, 2: 1})
    response = curator_browser.post(reverse("ui:dataset_new"), _version_form())
    version = DatasetVersion.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("ui:dataset_detail", args=[version.pk])
    html = curator_browser.get(response["Location"]).content.decode()
    assert 'data-testid="count-total">12<' in html and 'data-testid="balance"' in html
    assert "straddling: 0" in html and "Source CelebA" in html and "Level good" in html
    listing = curator_browser.get(reverse("ui:datasets")).content.decode()
    assert reverse("ui:dataset_detail", args=[version.pk]) in listing and 'data-testid="new-version"' in listing

    with django_capture_on_commit_callbacks() as callbacks:
        response = curator_browser.post(reverse("ui:dataset_export", args=[version.pk]),
                                        {"format": "training_jsonl", "images": "copy", "image_paths": "relative",
                                         "archive": "on"})
    assert response.status_code == 302 and len(callbacks) == 1
    export = Export.objects.get()
    html = curator_browser.get(reverse("ui:dataset_detail", args=[version.pk])).content.decode()
    assert f'hx-get="{reverse("ui:export_progress", args=[export.pk])}"' in html  # polls while it runs

    services.export_run(export_id=export.pk)
    row = curator_browser.get(reverse("ui:export_progress", args=[export.pk])).content.decode()
    assert 'data-state="succeeded"' in row and "hx-get" not in row and 'data-testid="export-download"' in row
    url = reverse("ui:export_download", args=[export.pk])
    whole = curator_browser.get(url)
    data = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and len(data) == Export.objects.get().archive_size
    part = curator_browser.get(url, HTTP_RANGE="bytes=512-", HTTP_IF_RANGE=whole["ETag"])
    assert part.status_code == 206 and b"".join(part.streaming_content) == data[512:]


def test_form_errors_are_shown_and_nothing_is_half_made(curator_browser):
    response = curator_browser.post(reverse("ui:dataset_new"), _version_form(include_imported_labels=None))
    assert response.status_code == 400 and b"Empty selection" in response.content
    assert not DatasetVersion.objects.exists()
    response = curator_browser.post(reverse("ui:dataset_new"), _version_form(test_ratio=2))
    assert response.status_code == 400 and not DatasetVersion.objects.exists()


def test_a_draft_that_cannot_be_frozen_says_why(curator_browser):
    labelled_set(2, 0)
    response = curator_browser.post(reverse("ui:dataset_new"), _version_form(kind="expert"), follow=True)
    version = DatasetVersion.objects.get()
    assert version.state == "draft" and b"lack the labels" in response.content
    response = curator_browser.post(reverse("ui:dataset_freeze", args=[version.pk]))
    assert response.status_code == 400 and b"lack the labels" in response.content


def test_a_bad_export_request_is_a_400_with_the_reason(curator_browser, settings, tmp_path):
    labelled_set(3, 0)
    curator_browser.post(reverse("ui:dataset_new"), _version_form())
    version = DatasetVersion.objects.get()
    response = curator_browser.post(
        reverse("ui:dataset_export", args=[version.pk]), {"format": "coco", "images": "copy"}
    )
    assert response.status_code == 400 and not Export.objects.exists()


def test_annotators_get_403_on_every_dataset_page(client):
    curator = factories.curator()
    labelled_set(2, 0)
    version = services.dataset_version_freeze(version=services.dataset_version_create(created_by=curator, name="x"))
    export, _ = services.export_create(version=version, format="humanbeauty", options={}, created_by=curator,
                                       enqueue=False)
    client.force_login(factories.annotator())
    gets = [reverse("ui:datasets"), reverse("ui:dataset_new"), reverse("ui:dataset_detail", args=[version.pk]),
            reverse("ui:export_progress", args=[export.pk]), reverse("ui:export_download", args=[export.pk])]
    for url in gets:
        assert client.get(url).status_code == 403, url
    posts = [reverse("ui:dataset_new"), reverse("ui:dataset_freeze", args=[version.pk]),
             reverse("ui:dataset_export", args=[version.pk])]
    for url in posts:
        assert client.post(url, {}).status_code == 403, url
