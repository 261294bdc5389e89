"""The dataset pages in a browser: create and freeze a version, start an export, watch htmx poll its row until
the job has run, and download the archive."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aesplatform.datasets.models import DatasetVersion, Export
from aesplatform.datasets.services import export_run
from tests import factories
from tests.support.datasets import labelled_set

pytestmark = pytest.mark.browser


def test_a_curator_freezes_exports_and_downloads(page, login, settings, tmp_path):
    settings.AESP_EXPORT_ROOT = tmp_path / "exports"
    settings.AESP_EXPORT_ROOTS = []
    labelled_set(6, 3)
    login(page, factories.curator())
    page.goto("/datasets/")
    page.get_by_test_id("new-version").click()
    page.get_by_label("Name").fill("spring set")
    page.get_by_label("Split seed").fill("5")
    with page.expect_navigation(url=re.compile(r"/datasets/\d+/$")):
        page.get_by_test_id("create-version").click()
    version = DatasetVersion.objects.get()
    assert version.state == "frozen"
    expect(page.get_by_test_id("count-total")).to_have_text("9")

    page.get_by_label("Format").select_option("humanbeauty")
    page.get_by_label("Images").select_option("copy")
    page.get_by_test_id("start-export").click()
    row = page.get_by_test_id("export-row")
    expect(row).to_have_attribute("data-state", "pending")
    export_run(export_id=Export.objects.get().pk)  # what the worker does; the open page polls for it
    expect(row).to_have_attribute("data-state", "succeeded", timeout=10_000)
    with page.expect_download() as download_info:
        page.get_by_test_id("export-download").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".tar")
    assert download.path().stat().st_size == Export.objects.get().archive_size
