"""The main pages work under the Content-Security-Policy header: each is served with it, its scripts run (htmx,
the page's own JS), and Chromium reports no violation (the `page` fixture fails a test on any). htmx's swaps write
no style attribute, even over elements that carry one (as the CSSOM or a browser extension leaves it)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import ImageStatus, ImportItem, ImportJob
from aesplatform.curation import services as curation_services
from aesplatform.curation.models import ReviewBatch
from aesplatform.modeling.models import TrainingJob
from tests import factories
from tests.support.curation import PIXEL_ONLY
from tests.support.modeling import frozen_version, synthetic_images
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


# Counts htmx's settled swaps, so that a test waits until htmx has copied the settled attributes back.
COUNT_SETTLES = "window.__settled = 0; document.addEventListener('htmx:afterSettle', () => { window.__settled += 1; });"


def _leave_empty_style_attributes(page, selector: str) -> int:
    """Give the element and every element with an id inside it an empty `style=""`, as setting then clearing a
    style through the CSSOM does (allowed by the policy): htmx's settle step would copy it back with setAttribute,
    which the policy blocks. Returns how many elements now carry the attribute."""
    return page.evaluate(
        """(selector) => {
          const root = document.querySelector(selector);
          const elements = [root, ...root.querySelectorAll('[id]')];
          elements.forEach((el) => { el.style.color = 'red'; el.style.color = ''; });
          return elements.filter((el) => el.getAttribute('style') === '').length;
        }""",
        selector,
    )


def _settled(page, count: int) -> None:
    page.wait_for_function(f"() => window.__settled >= {count}")
    page.wait_for_timeout(100)  # a violation is reported as a console message: let it arrive


def test_htmx_swaps_write_no_style_attribute_over_elements_that_carry_one(page, login, page_log):
    curator = factories.curator()
    images = stored_scenes(3)
    run = curation_services.filter_run_create(created_by=curator, image_ids=[i.pk for i in images],
                                              thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs())
    curation_services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    page.add_init_script(COUNT_SETTLES)
    login(page, curator)

    # a filter run's thresholds: a changed value swaps #run-review, whose inputs have ids
    _goto(page, f"/filtering/{run.pk}/")
    assert "style" not in page.evaluate("htmx.config.attributesToSettle")  # base.html's htmx-config
    assert _leave_empty_style_attributes(page, "#run-review") > 5
    field = page.get_by_test_id("threshold-min_short_side")
    field.fill("300")
    with page.expect_response(lambda r: r.url.endswith(f"/filtering/{run.pk}/thresholds/")) as swapped:
        field.dispatch_event("change")
    assert swapped.value.status == 200
    _settled(page, 1)
    expect(page.get_by_test_id("threshold-min_short_side")).to_have_value("300")
    assert page_log.csp_violations == []

    # an import's report and progress, polled while the job runs
    now = timezone.now()
    job = ImportJob.objects.create(kind="folder", source_name="shoot", created_by=curator, state="running",
                                   started_at=now, heartbeat_at=now, attempts=1, total=1)
    ImportItem.objects.create(job=job, name="a.jpg")
    _goto(page, f"/imports/{job.pk}/")
    _leave_empty_style_attributes(page, "#import-report")
    _leave_empty_style_attributes(page, "#import-progress")
    _settled(page, 2)
    expect(page.get_by_test_id("import-report")).to_have_attribute("data-state", "running")
    assert page_log.csp_violations == []

    # a training job's live section, polled while it runs
    version = frozen_version(synthetic_images(4), user=curator)
    training = TrainingJob.objects.create(dataset_version=version, preset="tiny-cpu", created_by=curator,
                                          state="running", step=3, total_steps=10, loss=0.42,
                                          loss_curve=[[1, 0.9], [2, 0.6], [3, 0.42]])
    _goto(page, f"/models/jobs/{training.pk}/")
    _leave_empty_style_attributes(page, "#job-live")
    TrainingJob.objects.filter(pk=training.pk).update(step=4, loss_curve=[[1, 0.9], [2, 0.6], [3, 0.42], [4, 0.4]])
    _settled(page, 1)
    assert page_log.csp_violations == []


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
