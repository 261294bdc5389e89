"""The rating panel fits the screen (Submit and the key legend in view at 1366x768 and 1920x1080), groups the
dimensions face / body / overall with each one's definition from model_core.standard, pre-sets nothing; a skip or
a flag can be undone from the page (U, Ctrl+Z, the toast's button) and brings the same image back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, Assignment, AssignmentState
from annotator_ui import views_annotate
from model_core.standard import DIMENSIONS, GROUPS, OVERALL
from tests import factories
from tests.support.browser import rating_campaign

pytestmark = pytest.mark.browser

SCREENS = [{"width": 1366, "height": 768}, {"width": 1920, "height": 1080}]


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # the live server runs in this process: keep its submits from queueing work on the shared test broker
    monkeypatch.setattr(services, "_queue_quality_update", lambda campaign_id: None)


def _open(page, login, *, images=2, mode="expert", screen=None):
    annotator = factories.annotator()
    campaign = rating_campaign(annotator, images=images, mode=mode)
    if screen:
        page.set_viewport_size(screen)
    login(page, annotator)
    page.goto(f"/annotate/{campaign.id}/")
    expect(page.get_by_test_id("task-image")).to_have_class("annotate__image is-ready")
    return annotator, campaign


def _in_view(page, test_id):
    box = page.get_by_test_id(test_id).bounding_box()
    size = page.viewport_size
    assert box is not None, f"{test_id} is not rendered"
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], (test_id, box, size)
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], (test_id, box, size)
    return box


def _shown(page) -> int:
    return int(page.get_by_test_id("annotate-page").get_attribute("data-assignment"))


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s['width']}x{s['height']}")
def test_the_expert_panel_fits_the_screen_grouped_defined_and_unset(page, login, screen):
    _open(page, login, screen=screen)

    for test_id in ("submit", "skip", "flag", "key-legend", "focus-definition"):
        _in_view(page, test_id)
    for d in DIMENSIONS:  # every control in view too: no scrolling to rate
        _in_view(page, f"dim-{d.key}")
    assert page.get_by_test_id("dimensions").evaluate("list => list.scrollHeight <= list.clientHeight + 1")
    expect(page.get_by_test_id("instructions")).to_contain_text("Rate the person")
    _in_view(page, "instructions")
    expect(page.get_by_test_id("key-legend")).to_contain_text("undo")
    image = page.get_by_test_id("task-image").bounding_box()
    frame = _in_view(page, "viewport")
    # a 640x480 image fills its frame (scaled up to fit), not a small picture in a large frame
    assert image["width"] >= frame["width"] - 2 or image["height"] >= frame["height"] - 2, (image, frame)

    for group in GROUPS:
        expect(page.get_by_test_id(f"group-{group.key}")).to_contain_text(group.label)
    for d in DIMENSIONS:
        row = page.get_by_test_id(f"dim-{d.key}")
        expect(row).to_have_attribute("aria-describedby", f"dim-{d.key}-def")
        expect(page.get_by_test_id(f"definition-{d.key}")).to_have_text(d.definition)
        expect(row.locator(".dim__name")).to_have_attribute("title", d.definition)
        expect(page.get_by_test_id(f"group-{d.group}").get_by_test_id(f"dim-{d.key}")).to_have_count(1)
        expect(page.get_by_test_id(f"value-{d.key}")).to_have_text("–")  # nothing pre-set
    expect(page.locator(".level[aria-pressed='true']")).to_have_count(0)
    expect(page.get_by_test_id("fine")).to_be_hidden()  # no slider thumb to anchor on
    expect(page.get_by_test_id("focus-definition")).to_contain_text(DIMENSIONS[0].definition)

    # the info toggle shows a definition in its row; the highlighted dimension's shows under the list
    page.get_by_test_id("info-outfit").click()
    expect(page.get_by_test_id("definition-outfit")).to_be_visible()
    expect(page.get_by_test_id("info-outfit")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("focus-definition")).to_contain_text(DIMENSIONS[1].definition)
    page.keyboard.press("i")  # the same toggle from the keyboard, for the highlighted dimension
    expect(page.get_by_test_id(f"definition-{DIMENSIONS[1].key}")).to_be_visible()
    page.keyboard.press("i")
    expect(page.get_by_test_id(f"definition-{DIMENSIONS[1].key}")).to_be_hidden()
    page.keyboard.press("ArrowUp")

    # an arrow on an unset dimension sets nothing (no 0.5 to start from)
    page.keyboard.press("ArrowRight")
    expect(page.get_by_test_id(f"value-{DIMENSIONS[0].key}")).to_have_text("–")
    # missing dimensions are named; the keyboard loop still rates and submits
    for key in "34343434343":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("status")).to_contain_text(f"{OVERALL.name} is missing")
    expect(page.get_by_test_id("fine")).to_be_hidden()
    page.keyboard.press("5")
    expect(page.get_by_test_id("fine")).to_be_visible()
    _in_view(page, "submit")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("session-rated")).to_have_text("1")
    row = Annotation.objects.get()
    assert row.facial_brightness == pytest.approx(0.5) and row.comprehensive == pytest.approx(0.9)


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s['width']}x{s['height']}")
def test_the_overall_panel_fits_too(page, login, screen):
    _open(page, login, mode="overall", screen=screen)
    for test_id in ("submit", "key-legend", f"dim-{OVERALL.key}"):
        _in_view(page, test_id)
    expect(page.get_by_test_id("group-overall")).to_contain_text("Overall")
    expect(page.get_by_test_id("group-face")).to_have_count(0)


def test_skip_then_undo_brings_the_same_image_back_with_its_ratings(page, login):
    annotator, _ = _open(page, login, images=3, screen=SCREENS[0])
    first = _shown(page)
    page.keyboard.press("4")  # a rating made before the skip comes back with the image
    page.keyboard.press("s")
    expect(page.get_by_test_id("undo-toast")).to_be_visible()
    expect(page.get_by_test_id("undo-toast")).to_contain_text("Skipped")
    _in_view(page, "undo-toast")
    expect(page.get_by_test_id("annotate-page")).not_to_have_attribute("data-assignment", str(first))
    second = _shown(page)
    assert Assignment.objects.get(pk=first).state == AssignmentState.SKIPPED
    expect(page.get_by_test_id("session-skipped")).to_have_text("1")

    page.keyboard.press("u")
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(first))
    expect(page.get_by_test_id("undo-toast")).to_be_hidden()
    expect(page.get_by_test_id("status")).to_contain_text("Skip undone")
    expect(page.get_by_test_id("session-skipped")).to_have_text("0")
    expect(page.get_by_test_id(f"value-{DIMENSIONS[0].key}")).to_have_text("0.70")
    assert Assignment.objects.get(pk=first).state == AssignmentState.LEASED

    for key in "33333333333":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    # the image that was on screen during the offer comes next
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(second))
    stored = Annotation.objects.get(annotator=annotator)
    assert stored.assignment_id == first and stored.facial_brightness == pytest.approx(0.7)


def test_flag_then_undo_with_ctrl_z_or_the_button(page, login):
    annotator, _ = _open(page, login, images=3, screen=SCREENS[1])
    first = _shown(page)
    page.keyboard.press("f")
    expect(page.get_by_test_id("undo-toast")).to_contain_text("Flagged as broken")
    expect(page.get_by_test_id("annotate-page")).not_to_have_attribute("data-assignment", str(first))
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(first))
    expect(page.get_by_test_id("status")).to_contain_text("Flag undone")
    assert Assignment.objects.get(pk=first).state == AssignmentState.LEASED

    page.keyboard.press("f")  # again, undone with the toast's button this time
    expect(page.get_by_test_id("undo-toast")).to_be_visible()
    page.get_by_test_id("undo").click()
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(first))
    assert Assignment.objects.get(pk=first).state == AssignmentState.LEASED


def test_the_last_image_skipped_can_be_undone_from_the_done_screen(page, login):
    _open(page, login, images=1)
    only = _shown(page)
    page.keyboard.press("s")
    expect(page.get_by_test_id("done")).to_be_visible()
    page.get_by_test_id("undo").click()
    expect(page.get_by_test_id("done")).to_be_hidden()
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(only))
    expect(page.get_by_test_id("submit")).to_be_visible()


def test_the_undo_offer_ends_and_a_late_key_changes_nothing(page, login, monkeypatch):
    monkeypatch.setattr(views_annotate, "UNDO_SECONDS", 1)
    _open(page, login, images=2)
    first = _shown(page)
    page.keyboard.press("s")
    expect(page.get_by_test_id("undo-toast")).to_be_visible()
    expect(page.get_by_test_id("undo-toast")).to_be_hidden(timeout=5_000)
    second = _shown(page)
    page.keyboard.press("u")
    page.keyboard.press("Control+z")
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(second))
    assert Assignment.objects.get(pk=first).state == AssignmentState.SKIPPED


def test_an_undo_whose_answer_is_lost_is_retried_and_still_brings_the_image_back(page, login):
    _open(page, login, images=3)
    first = _shown(page)
    page.keyboard.press("s")
    expect(page.get_by_test_id("undo-toast")).to_be_visible()
    attempts = []

    def cut(route):
        attempts.append(route.request.url)
        if len(attempts) == 1:
            route.fetch()  # the server restores the lease ...
            route.abort("connectionreset")  # ... and the answer is lost
        else:
            route.continue_()  # the retry is answered with the same live lease (idempotent)

    page.route("**/api/assignments/*/restore/", cut)
    page.keyboard.press("u")
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(first), timeout=20_000)
    page.unroute("**/api/assignments/*/restore/")
    assert len(attempts) >= 2 and len(set(attempts)) == 1
    assert Assignment.objects.get(pk=first).state == AssignmentState.LEASED


def test_an_undo_while_the_next_task_is_still_on_its_way_keeps_the_image_back_on_screen(page, login):
    annotator = factories.annotator()
    campaign = rating_campaign(annotator, images=3)
    login(page, annotator)
    calls, held = [], []

    def first_lease_only(route):  # the first lease is answered; every later one is made but its answer held back
        calls.append(route)
        if len(calls) == 1:
            route.continue_()
        else:
            held.append((route, route.fetch()))

    page.route("**/api/campaigns/*/next-task/", first_lease_only)
    page.goto(f"/annotate/{campaign.id}/")
    expect(page.get_by_test_id("task-image")).to_have_class("annotate__image is-ready")
    first = _shown(page)
    page.keyboard.press("s")  # the skip is stored; nothing was preloaded, the next task's answer hangs
    expect(page.get_by_test_id("undo-toast")).to_be_visible()
    page.keyboard.press("u")
    expect(page.get_by_test_id("status")).to_contain_text("Skip undone")
    assert len(held) == 2  # the preload and the lease of the next task, both still on their way
    leased = {r.json()["id"] for _, r in held}
    assert first not in leased  # the server leased other tasks before the undo
    for route, response in held:  # the answers arrive after the undo: those tasks wait their turn on the page
        route.fulfill(response=response)
    page.unroute("**/api/campaigns/*/next-task/")
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-assignment", str(first))
    for key in "444444444444":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("session-rated")).to_have_text("1")
    expect(page.get_by_test_id("annotate-page")).not_to_have_attribute("data-assignment", str(first))
    assert Annotation.objects.get(annotator=annotator).assignment_id == first


def test_an_undo_the_server_refuses_says_why_and_changes_nothing(page, login):
    annotator, campaign = _open(page, login, images=1)
    only = _shown(page)
    page.keyboard.press("s")
    expect(page.get_by_test_id("done")).to_be_visible()
    other = factories.annotator()
    campaign.annotators.add(other)
    assert services.task_lease_next(campaign=campaign, annotator=other) is not None  # the freed place is taken
    page.keyboard.press("u")
    expect(page.get_by_test_id("undo-toast")).to_contain_text("Could not undo: other annotators took this task")
    expect(page.get_by_test_id("undo")).to_be_hidden()
    expect(page.get_by_test_id("done")).to_be_visible()
    assert Assignment.objects.get(pk=only).state == AssignmentState.SKIPPED
