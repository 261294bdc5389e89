"""The first hour of a new team, in a browser: the home page says what to do first, a filter run's page shows the
time left and a Cancel that works, and an import's report follows the job without a reload."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aesplatform.catalog.models import ImportItem, ImportJob
from aesplatform.curation.models import FilterRun
from tests import factories

pytestmark = pytest.mark.browser


def test_the_home_page_leads_a_new_curator_through_the_first_steps(page, login):
    login(page, factories.curator())
    steps = page.get_by_test_id("first-steps")
    expect(steps).to_contain_text("Getting started")
    expect(page.get_by_test_id("step-import")).to_have_attribute("aria-current", "step")
    expect(page.get_by_test_id("step-import").get_by_test_id("step-next")).to_be_visible()
    expect(page.get_by_test_id("step-filter")).to_have_attribute("data-done", "false")

    factories.ImageFactory(status="approved")
    page.reload()
    expect(page.get_by_test_id("step-import")).to_have_attribute("data-done", "true")
    expect(page.get_by_test_id("step-filter")).to_have_attribute("data-done", "true")
    expect(page.get_by_test_id("step-campaign")).to_have_attribute("aria-current", "step")
    with page.expect_navigation(url=re.compile(r"/campaigns/new/$")):
        page.get_by_test_id("step-link-campaign").click()
    expect(page.locator("h1")).to_be_visible()


def test_a_running_filter_run_shows_its_eta_and_can_be_cancelled(page, login):
    curator = factories.curator()
    now = timezone.now()
    run = FilterRun.objects.create(name="first pass", created_by=curator, clip_model_name="AESP-Tiny-CLIP",
                                   random_weights=True, state="running", started_at=now - timedelta(seconds=60),
                                   heartbeat_at=now, attempts=1, total=100, processed=25)
    login(page, curator)
    page.goto(f"/filtering/{run.pk}/")
    expect(page.get_by_test_id("random-weights")).to_be_visible()
    eta = page.get_by_test_id("job-eta")
    expect(eta).to_contain_text("left")
    expect(eta).to_contain_text(re.compile(r"about \d+ min|\d+ s"))

    # the worker moves on: the polled status shows the new count and a shorter ETA without a reload
    FilterRun.objects.filter(pk=run.pk).update(processed=75, heartbeat_at=timezone.now())
    expect(page.get_by_test_id("run-processed")).to_have_text("75 / 100", timeout=10_000)

    page.get_by_test_id("cancel-job").click()
    expect(page.get_by_test_id("job-stopping")).to_be_visible(timeout=10_000)
    assert FilterRun.objects.get(pk=run.pk).cancel_requested


def test_a_pending_filter_run_says_its_eta_is_not_available_yet(page, login):
    curator = factories.curator()
    run = FilterRun.objects.create(name="queued", created_by=curator, total=10, heartbeat_at=timezone.now())
    login(page, curator)
    page.goto(f"/filtering/{run.pk}/")
    expect(page.get_by_test_id("job-eta")).to_contain_text("not available")
    page.get_by_test_id("cancel-job").click()
    expect(page.get_by_test_id("run-status")).to_contain_text("cancelled", timeout=10_000)
    assert FilterRun.objects.get(pk=run.pk).state == "cancelled"


def test_the_import_report_refreshes_while_the_job_runs(page, login):
    curator = factories.curator()
    now = timezone.now()
    job = ImportJob.objects.create(kind="folder", source_name="shoot", created_by=curator, state="running",
                                   started_at=now, heartbeat_at=now, attempts=1, total=2)
    items = [ImportItem.objects.create(job=job, name=name) for name in ("a.jpg", "b.jpg")]
    login(page, curator)
    page.goto(f"/imports/{job.pk}/")
    report = page.get_by_test_id("import-report")
    expect(report.locator('tr[data-outcome="pending"]')).to_have_count(2)

    image = factories.ImageFactory()
    ImportItem.objects.filter(pk=items[0].pk).update(outcome="imported", image=image)
    ImportItem.objects.filter(pk=items[1].pk).update(outcome="duplicate", message="same as image 1")
    ImportJob.objects.filter(pk=job.pk).update(state="succeeded", finished_at=timezone.now(), processed=2,
                                               imported_count=1, duplicate_count=1)
    # no reload: the report part is polled and stops once the job has ended
    expect(report.locator('tr[data-outcome="imported"]')).to_have_count(1, timeout=10_000)
    expect(report.locator('tr[data-outcome="pending"]')).to_have_count(0)
    expect(page.get_by_test_id("import-report")).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_test_id("import-progress")).to_have_attribute("data-state", "succeeded")
    assert page.get_by_test_id("import-report").get_attribute("hx-trigger") is None
