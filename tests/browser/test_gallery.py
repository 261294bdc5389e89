"""The image gallery in a browser: filters, and htmx appending older pages under the strict CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aesplatform.catalog.models import ImageStatus
from annotator_ui.selectors import GALLERY_PAGE_SIZE
from tests import factories

pytestmark = pytest.mark.browser


def test_show_older_appends_the_next_page_with_htmx(page, login):
    factories.ImageFactory.create_batch(GALLERY_PAGE_SIZE + 5)
    login(page, factories.curator())
    page.get_by_test_id("nav-images").click()
    tiles = page.get_by_test_id("gallery").locator("li.tile")
    expect(tiles).to_have_count(GALLERY_PAGE_SIZE)
    url_before = page.url
    page.get_by_test_id("gallery-older").click()
    expect(tiles).to_have_count(GALLERY_PAGE_SIZE + 5)  # appended in place, not a new page
    assert page.url == url_before
    expect(page.get_by_test_id("gallery-end")).to_be_visible()
    expect(page.get_by_test_id("gallery-older")).to_have_count(0)


def test_status_filter_submits_on_change(page, login):
    factories.ImageFactory.create_batch(3, status=ImageStatus.APPROVED)
    factories.ImageFactory.create_batch(2, status=ImageStatus.REJECTED)
    login(page, factories.curator())
    page.goto("/images/")
    expect(page.get_by_test_id("gallery").locator("li.tile")).to_have_count(5)
    with page.expect_navigation():
        page.get_by_label("Status").select_option("rejected")  # app.js submits the form
    assert "status=rejected" in page.url
    expect(page.get_by_test_id("gallery").locator("li.tile")).to_have_count(2)
    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_test_id("gallery").locator("li.tile")).to_have_count(5)
