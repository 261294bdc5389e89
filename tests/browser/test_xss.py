"""Stored XSS: image names, campaign names and instructions, and a filter run's name and prompt set carrying script
payloads are shown as text on every page that renders them, and nothing runs.

The pages are opened with the Content-Security-Policy bypassed (Playwright's bypass_csp), so that what is tested
is the escaping itself: with the policy on, an injected handler would be blocked anyway and the test would prove
nothing about the templates. One test then checks the same page with the policy on."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aesplatform.annotation import services as annotation_services
from aesplatform.catalog.models import ImageStatus
from aesplatform.curation import services as curation_services
from aesplatform.curation.engine.prompts import default_prompt_set
from aesplatform.curation.models import ReviewBatch
from tests import factories
from tests.browser.conftest import VIEWPORT, login_through_form
from tests.support.curation import PIXEL_ONLY
from tests.support.scenes import stored_scenes, tiny_run_kwargs

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=window.__xss=1>"
SCRIPT = "<script>window.__xss=1</script>"
SVG = '"><svg onload=window.__xss=1>'
QUOTE = "'><img src=x onerror=window.__xss=1>"
PAYLOAD = f"{IMG} {SCRIPT} {SVG} {QUOTE}"

INERT = """() => ({
  ran: window.__xss !== undefined,
  handlers: document.querySelectorAll('[onerror], [onload], [onclick], [onmouseover]').length,
  injected: document.querySelectorAll('img[src="x"], svg[onload], body svg:not([aria-hidden]):not(.chart)').length,
  scripts: [...document.scripts].filter(s => ['', 'text/javascript', 'module'].includes(s.type)
                                            && s.text.includes('__xss')).length,
  text: document.body.innerText,
})"""


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(annotation_services, "_queue_quality_update", lambda campaign_id: None)


@pytest.fixture
def hostile_world(db):
    """A curator's catalog, filter run, review batch and campaign, every free-text field a payload."""
    curator, annotator = factories.curator(), factories.annotator()
    images = stored_scenes(3, original_name=f"portrait {PAYLOAD}.jpg")
    prompts = default_prompt_set()
    prompts["version"] = f"v1 {PAYLOAD}"
    for group in prompts["groups"].values():
        group["label"] = f"{group['label']} {PAYLOAD}"
        group["positive"] = [*group["positive"], f"a photo {SCRIPT}"]
    run = curation_services.filter_run_create(
        created_by=curator, name=f"Run {PAYLOAD}", image_ids=[i.pk for i in images], prompt_set=prompts,
        thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs(),
    )
    curation_services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    batch = ReviewBatch.objects.get(run=run)
    approved = stored_scenes(2, start=10, status=ImageStatus.APPROVED, original_name=f"rated {PAYLOAD}.jpg")
    campaign = annotation_services.campaign_create(
        name=f"Campaign {SCRIPT}", mode="expert", created_by=curator, image_ids=[i.pk for i in approved],
        redundancy=1, annotators=[annotator], state="active", instructions=f"Look at the face.\n\n{PAYLOAD}",
    )
    return {"curator": curator, "annotator": annotator, "run": run, "batch": batch, "campaign": campaign}


@pytest.fixture
def no_csp_page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT, bypass_csp=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    page.wait_for_load_state("networkidle")
    context.close()


def _check(page, path: str, *, shows: tuple[str, ...] = ()) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(150)  # any onerror of a broken <img src=x> would have fired by now
    state = page.evaluate(INERT)
    assert not state["ran"], f"a payload ran on {path}"
    assert state["handlers"] == 0 and state["injected"] == 0 and state["scripts"] == 0, (path, state)
    for text in shows:
        assert text in state["text"], f"{text!r} is not shown as text on {path}"


def test_payloads_are_inert_text_on_the_curator_pages(no_csp_page, hostile_world):
    page, run, batch, campaign = no_csp_page, hostile_world["run"], hostile_world["batch"], hostile_world["campaign"]
    login_through_form(page, hostile_world["curator"])
    _check(page, "/")
    _check(page, "/images/", shows=(f"portrait {IMG}",))  # the gallery's tile names
    _check(page, "/filtering/", shows=(SCRIPT,))
    _check(page, f"/filtering/{run.pk}/", shows=(f"Run {IMG}", f"v1 {IMG}", SVG))  # name, prompt set, group labels
    _check(page, f"/filtering/batches/{batch.pk}/")
    _check(page, "/campaigns/", shows=(f"Campaign {SCRIPT}",))
    _check(page, f"/campaigns/{campaign.pk}/", shows=(f"Campaign {SCRIPT}", QUOTE))  # the dashboard + instructions


def test_payloads_are_inert_text_on_the_annotator_pages(no_csp_page, hostile_world):
    page, campaign = no_csp_page, hostile_world["campaign"]
    login_through_form(page, hostile_world["annotator"])
    _check(page, "/", shows=(f"Campaign {SCRIPT}",))
    _check(page, "/annotate/", shows=(f"Campaign {SCRIPT}",))
    _check(page, f"/annotate/{campaign.pk}/", shows=(f"Campaign {SCRIPT}", IMG, SCRIPT, SVG))
    expect(page.get_by_test_id("instructions")).to_contain_text(SCRIPT)  # the instructions panel, as text
    page.wait_for_function(
        "() => { const i = document.querySelector('#annotate img'); return i && i.naturalWidth > 0; }"
    )
    assert page.evaluate(INERT)["ran"] is False  # the rating UI loaded its task (JS rendered it) and still nothing ran
    _check(page, "/my-work/")


def test_with_the_policy_on_the_annotate_page_shows_the_payloads_without_a_violation(page, login, hostile_world):
    login(page, hostile_world["annotator"])
    page.goto(f"/annotate/{hostile_world['campaign'].pk}/")
    expect(page.get_by_test_id("instructions")).to_contain_text(IMG)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__xss") is None
    # the `page` fixture fails the test on any CSP violation: an escaped payload never asks to run
