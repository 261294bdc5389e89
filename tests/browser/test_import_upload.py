"""The import page in a browser: choose files, upload them with a progress bar, land on the job's page, and
watch htmx poll the progress until the job has run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aesplatform.catalog.models import ImportJob
from aesplatform.catalog.services import import_job_run
from tests import factories
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.browser


def test_uploading_files_opens_the_job_whose_progress_updates_by_itself(page, login):
    login(page, factories.curator())
    page.goto("/imports/")
    page.get_by_test_id("upload-input").set_input_files([
        {"name": "one.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(seed=1)},
        {"name": "two.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(seed=2)},
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"just text"},
    ])
    expect(page.get_by_test_id("upload-selection")).to_contain_text("3 files")
    with page.expect_navigation(url=re.compile(r"/imports/\d+/$")):
        page.get_by_test_id("upload-submit").click()
    job = ImportJob.objects.get()
    assert job.total == 3 and job.state == "pending"
    progress = page.get_by_test_id("import-progress")
    expect(progress).to_have_attribute("data-state", "pending")

    import_job_run(job_id=job.pk)  # what the worker does; the open page polls for it
    expect(progress).to_have_attribute("data-state", "succeeded", timeout=10_000)
    expect(page.get_by_test_id("import-imported")).to_have_text("2")
    expect(page.get_by_test_id("import-errors")).to_have_text("1")


def test_a_server_path_outside_the_roots_is_refused_on_the_page(page, login):
    login(page, factories.curator())
    page.goto("/imports/")
    page.get_by_label("Path").fill("../../etc")
    page.get_by_test_id("server-submit").click()
    expect(page.get_by_test_id("server-error")).to_contain_text("outside the allowed import folders")
