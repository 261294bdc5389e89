"""A curator reviews a proposed batch in Chromium: keyboard override of one image, approve (after a confirmation);
the DB records it. Keep all / invert (buttons and keys, the keys confirm first), undo, Escape cancels."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aesplatform.catalog.models import Image, ImageStatus
from aesplatform.curation import services
from aesplatform.curation.models import BatchState, CuratorDecision, ReviewBatch
from tests import factories
from tests.support.curation import PIXEL_ONLY
from tests.support.scenes import stored_scenes, tiny_run_kwargs

pytestmark = pytest.mark.browser



def test_curator_overrides_one_image_with_the_keyboard_and_approves(page, login):
    curator = factories.curator()
    images = stored_scenes(4)
    run = services.filter_run_create(created_by=curator, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY,
                                     enqueue=False, **tiny_run_kwargs())
    services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    batch = ReviewBatch.objects.get(run=run)

    login(page, curator)
    page.goto(f"/filtering/{run.pk}/")
    expect(page.get_by_test_id("count-keep")).to_have_text("4")
    page.get_by_test_id("review-next").click()
    form = page.get_by_test_id("review-form")
    expect(form).to_have_attribute("data-review-ready", "true")
    tiles = page.get_by_test_id("review-grid").locator("li.review__tile")
    expect(tiles).to_have_count(4)
    expect(page.get_by_test_id("keep-count")).to_have_text("4")
    expect(tiles.nth(0)).to_be_focused()

    page.keyboard.press("ArrowRight")
    expect(tiles.nth(1)).to_be_focused()
    overridden = int(tiles.nth(1).get_attribute("data-image"))
    page.keyboard.press("x")
    expect(page.get_by_test_id(f"keep-{overridden}")).not_to_be_checked()
    expect(page.get_by_test_id("keep-count")).to_have_text("3")
    expect(page.get_by_test_id("reject-count")).to_have_text("1")
    expect(tiles.nth(1)).to_have_class(re.compile(r"review__tile--reject"))
    page.keyboard.press("a")  # batch-wide: asks first, with what it will decide
    dialog = page.get_by_test_id("review-confirm")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("review-confirm-text")).to_contain_text("all 4 images: 3 kept, 1 rejected")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.rstrip("/").endswith(f"/filtering/{run.pk}")  # no other batch waits: back to the run
    expect(page.get_by_test_id(f"batch-{batch.number}")).to_contain_text("decided")

    batch.refresh_from_db()
    assert batch.state == BatchState.DECIDED and batch.decided_by == curator and batch.decided_at is not None
    decisions = {d.image_id: d for d in CuratorDecision.objects.filter(batch=batch)}
    assert set(decisions) == {i.pk for i in images}
    for image_id, decision in decisions.items():
        expected = "reject" if image_id == overridden else "approve"
        assert (decision.decision, decision.overrode_proposal, decision.decided_by_id) == (
            expected, image_id == overridden, curator.pk)
    statuses = dict(Image.objects.filter(pk__in=decisions).values_list("id", "status"))
    assert statuses == {i.pk: ImageStatus.REJECTED if i.pk == overridden else ImageStatus.APPROVED for i in images}


def _batch_page(page, login, n=4):
    curator = factories.curator()
    images = stored_scenes(n)
    run = services.filter_run_create(created_by=curator, image_ids=[i.pk for i in images], thresholds=PIXEL_ONLY,
                                     enqueue=False, **tiny_run_kwargs())
    services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    batch = ReviewBatch.objects.get(run=run)
    login(page, curator)
    page.goto(f"/filtering/batches/{batch.pk}/")
    expect(page.get_by_test_id("review-form")).to_have_attribute("data-review-ready", "true")
    return batch


def test_invert_keep_all_and_undo_with_buttons_and_keys_and_escape_cancels(page, login):
    batch = _batch_page(page, login)
    keep, reject = page.get_by_test_id("keep-count"), page.get_by_test_id("reject-count")
    expect(page.get_by_test_id("review-keys")).to_contain_text("keep all")
    expect(page.get_by_test_id("review-keys")).to_contain_text("invert")
    expect(keep).to_have_text("4")

    page.get_by_test_id("invert").click()  # a button: applied at once, undo is there
    expect(keep).to_have_text("0")
    expect(reject).to_have_text("4")
    expect(page.get_by_test_id("undo-bulk")).to_be_enabled()
    page.get_by_test_id("undo-bulk").click()
    expect(keep).to_have_text("4")
    expect(page.get_by_test_id("undo-bulk")).to_be_disabled()

    tiles = page.get_by_test_id("review-grid").locator("li.review__tile")
    tiles.nth(0).focus()
    page.keyboard.press("x")
    expect(keep).to_have_text("3")
    page.keyboard.press("i")  # a key: asks first, saying how many images change
    expect(page.get_by_test_id("review-confirm")).to_be_visible()
    expect(page.get_by_test_id("review-confirm-text")).to_contain_text("changes 4 images of 4")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("review-confirm")).to_be_hidden()
    expect(keep).to_have_text("3")  # nothing changed
    page.keyboard.press("i")
    page.keyboard.press("Enter")
    expect(keep).to_have_text("1")
    page.keyboard.press("s")
    expect(page.get_by_test_id("review-confirm-text")).to_contain_text("changes 3 images of 4")
    page.keyboard.press("Enter")
    expect(keep).to_have_text("4")
    page.keyboard.press("u")  # undoes keep all
    expect(keep).to_have_text("1")
    page.keyboard.press("u")  # then the invert
    expect(keep).to_have_text("3")

    page.keyboard.press("a")
    expect(page.get_by_test_id("review-confirm-text")).to_contain_text("3 kept, 1 rejected (1 override")
    page.keyboard.press("Escape")  # approving is cancelled too: nothing decided
    expect(page.get_by_test_id("review-confirm")).to_be_hidden()
    batch.refresh_from_db()
    assert batch.state == BatchState.PENDING and not CuratorDecision.objects.filter(batch=batch).exists()
