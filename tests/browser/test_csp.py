"""The main pages work under the Content-Security-Policy header: each is served with it, its scripts run (htmx,
the page's own JS), and Chromium reports no violation (the `page` fixture fails a test on any)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import ImageStatus
from aesplatform.curation import services as curation_services
from aesplatform.curation.models import ReviewBatch
from tests import factories
from tests.support.curation import PIXEL_ONLY
from tests.support.scenes import stored_scenes, tiny_run_kwargs

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # the live server runs in this process: keep its submits from queueing work on the shared test broker
    monkeypatch.setattr(annotation_services, "_queue_quality_update", lambda campaign_id: None)


def _goto(page, path: str):
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)
    policy = response.header_value("content-security-policy") or ""
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy, path
    return response


def test_the_login_page_and_an_annotators_rating_page_run_under_the_policy(page, login):
    annotator = factories.annotator()
    images = stored_scenes(2, status=ImageStatus.APPROVED)
    campaign = annotation_services.campaign_create(
        name="CSP", mode="overall", created_by=factories.curator(), image_ids=[i.pk for i in images], redundancy=1,
        annotators=[annotator], state="active", instructions="Rate the person.",
    )
    _goto(page, "/login/")
    login(page, annotator)
    for path in ("/", "/annotate/", "/my-work/"):
        _goto(page, path)
    _goto(page, f"/annotate/{campaign.pk}/")
    expect(page.get_by_test_id("instructions")).to_contain_text("Rate the person.")
    # the page's JS fetched a task and shows its image (connect-src and img-src 'self')
    image = page.locator("#annotate img").first
    expect(image).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#annotate img'); return i && i.naturalWidth > 0; }"
    )
    page.wait_for_load_state("networkidle")  # the next task's prefetch done before the database is flushed


def test_curator_pages_gallery_review_datasets_models_and_dashboards_run_under_the_policy(page, login):
    curator = factories.curator()
    images = stored_scenes(3)
    run = curation_services.filter_run_create(created_by=curator, image_ids=[i.pk for i in images],
                                              thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs())
    curation_services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    batch = ReviewBatch.objects.get(run=run)
    campaign = factories.CampaignFactory(created_by=curator, instructions="Look closely.")
    login(page, curator)
    for path in ("/", "/images/", "/imports/", "/filtering/", f"/filtering/{run.pk}/", "/campaigns/",
                 f"/campaigns/{campaign.pk}/", "/campaigns/new/", "/datasets/", "/datasets/new/", "/models/",
                 "/models/jobs/new/", "/models/prescores/"):
        _goto(page, path)
    _goto(page, "/images/")
    page.wait_for_function("() => [...document.querySelectorAll('.tile__frame img')].some(i => i.naturalWidth > 0)")
    _goto(page, f"/filtering/batches/{batch.pk}/")
    expect(page.get_by_test_id("review-form")).to_have_attribute("data-review-ready", "true")  # review.js ran
    # htmx (vendored, no eval, no inline style) swaps the run's threshold form fragment in under the policy
    _goto(page, f"/filtering/{run.pk}/")
    with page.expect_response(lambda r: r.url.endswith(f"/filtering/{run.pk}/thresholds/")) as swapped:
        page.get_by_test_id("thresholds-form").locator("input[type=number], input[type=range]").first.dispatch_event(
            "change"
        )
    assert swapped.value.status == 200


def test_the_admin_and_the_api_docs_run_under_the_policy(page, login):
    admin = factories.admin()
    login(page, admin)
    for path in ("/admin/", "/admin/auth/user/", f"/admin/auth/user/{admin.pk}/change/"):
        _goto(page, path)
    _goto(page, "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("HumanAes platform API")  # Swagger UI ran
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()


def test_a_locked_out_login_shows_why_under_the_policy(page, settings):
    settings.AXES_FAILURE_LIMIT = 2
    user = factories.annotator()
    page.goto("/login/")
    for _ in range(2):
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill("not-the-password")
        with page.expect_navigation():
            page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-locked")).to_contain_text("Too many failed login attempts")
    page.get_by_label("Password").fill(factories.TEST_PASSWORD)  # the right one: still refused until the cool-off
    with page.expect_navigation() as navigation:
        page.get_by_test_id("login-submit").click()
    assert navigation.value.status == 429
    expect(page.get_by_test_id("login-locked")).to_contain_text("Try again in 15 minutes")
    expect(page.get_by_test_id("account-name")).to_have_count(0)
