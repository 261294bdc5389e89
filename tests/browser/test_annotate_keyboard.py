"""Done means: an annotator rates three images in expert mode with the keyboard only; a submit whose network is cut
(request lost, then response lost) is retried and stored exactly once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aesplatform.annotation import services
from aesplatform.annotation.models import Annotation, Assignment, AssignmentState
from model_core.standard import DIMENSION_KEYS, LEVEL_CENTRES
from tests import factories
from tests.support.browser import rating_campaign

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # the live server runs in this process: keep its submits from queueing work on the shared test broker
    monkeypatch.setattr(services, "_queue_quality_update", lambda campaign_id: None)


def _rate_with_keys(page, keys: str):
    for key in keys:
        page.keyboard.press(key)


def test_three_images_in_expert_mode_with_the_keyboard_only(page, login):
    annotator = factories.annotator()
    campaign = rating_campaign(annotator)
    login(page, annotator)
    page.goto(f"/annotate/{campaign.id}/")
    expect(page.get_by_test_id("instructions")).to_contain_text("Rate the person")
    levels = "123451234512"  # one key per dimension, in order; each key moves to the next dimension
    for n in range(3):
        expect(page.get_by_test_id("task-image")).to_have_class("annotate__image is-ready")
        expect(page.get_by_test_id("annotate-page")).to_have_attribute(
            "data-assignment", str(_live_or_last(annotator, n))
        )
        _rate_with_keys(page, levels)
        expect(page.get_by_test_id("value-comprehensive")).to_have_text("0.30")
        page.keyboard.press("ArrowUp")  # arrows move; right fine-tunes the focused dimension
        page.keyboard.press("ArrowRight")
        expect(page.get_by_test_id("value-general_appearance_aesthetic")).to_have_text("0.11")
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("session-rated")).to_have_text(str(n + 1))
    expect(page.get_by_test_id("done")).to_be_visible()

    rows = list(Annotation.objects.filter(annotator=annotator).order_by("id"))
    assert len(rows) == 3 and len({r.task_id for r in rows}) == 3
    for row in rows:
        expected = [LEVEL_CENTRES[int(c) - 1] for c in levels]
        expected[10] = round(expected[10] + 0.01, 2)
        assert [getattr(row, k) for k in DIMENSION_KEYS] == pytest.approx(expected)
        assert row.is_expert and row.ui_version == "annotate.js/1" and row.time_spent_ms > 0
    assert not Assignment.objects.filter(annotator=annotator, state=AssignmentState.LEASED).exists()


def _live_or_last(annotator, n):
    ids = list(Assignment.objects.filter(annotator=annotator).order_by("id").values_list("id", flat=True))
    return ids[n]


def test_a_submit_with_the_network_cut_is_stored_exactly_once(page, login):
    annotator = factories.annotator()
    campaign = rating_campaign(annotator, images=2, mode="overall")
    login(page, annotator)
    page.goto(f"/annotate/{campaign.id}/")
    expect(page.get_by_test_id("task-image")).to_have_class("annotate__image is-ready")

    attempts = []

    def cut(route):
        attempts.append(route.request.post_data_json["idempotency_key"])
        if len(attempts) == 1:
            route.abort("internetdisconnected")  # the request never reaches the server
        elif len(attempts) == 2:
            route.fetch()  # the server stores it ...
            route.abort("connectionreset")  # ... and the answer is lost
        else:
            route.continue_()

    page.route("**/api/assignments/*/submit/", cut)
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("annotate-page")).to_have_attribute("data-retrying", "true")
    expect(page.get_by_test_id("session-rated")).to_have_text("1", timeout=20_000)
    page.unroute("**/api/assignments/*/submit/")

    assert len(attempts) >= 3 and len(set(attempts)) == 1  # one key for every retry
    rows = Annotation.objects.filter(annotator=annotator)
    assert rows.count() == 1 and rows.get().comprehensive == pytest.approx(0.7)
    # the page moved on to the preloaded second image and still works normally
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("done")).to_be_visible()
    assert Annotation.objects.filter(annotator=annotator).count() == 2


def test_a_draft_survives_a_reload(page, login):
    annotator = factories.annotator()
    campaign = rating_campaign(annotator, images=1)
    login(page, annotator)
    page.goto(f"/annotate/{campaign.id}/")
    expect(page.get_by_test_id("task-image")).to_have_class("annotate__image is-ready")
    _rate_with_keys(page, "555")
    expect(page.get_by_test_id("value-facial_skin_tone")).to_have_text("0.90")
    page.reload()
    expect(page.get_by_test_id("value-facial_skin_tone")).to_have_text("0.90")
    expect(page.get_by_test_id("value-facial_structure")).to_have_text("–")
