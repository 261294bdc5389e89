"""Browser tests: Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

Fixtures
- `browser` (session): one headless Chromium for the whole run.
- `page` (per test): a fresh context (no cookies), base_url = the live server, so `page.goto("/images/")` works.
  It records uncaught JavaScript errors and Content-Security-Policy violations and fails the test on either;
  on a failed test it saves a full-page screenshot to test-results/<test>.png.
- `login(page, user)`: logs `user` in through the real login form (password factories.TEST_PASSWORD).
- `page_log`: what the page fixture recorded (console errors, page errors, CSP violations), to assert on.

Every test in this folder is marked `browser` (select with `-m browser`, leave out with `-m "not browser"`).
The live server needs committed data: pytest-django makes any test that uses `live_server` transactional,
so create users and rows with the factories inside the test as usual.

Chromium: /usr/bin/chromium (Debian package `chromium`), or the path in AESP_CHROMIUM. Where it is missing the
tests fail with a hint; AESP_SKIP_BROWSER=1 skips them instead (for machines that cannot install it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio event loop in this thread, which makes Django refuse ORM calls from it
# (SynchronousOnlyOperation). The test thread only ever does ordinary synchronous work, so it is safe here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "test-results"
CHROMIUM = os.environ.get("AESP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
]
DEFAULT_TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1280, "height": 800}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so that the page fixture knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def playwright_instance():
    if os.environ.get("AESP_SKIP_BROWSER"):
        pytest.skip("AESP_SKIP_BROWSER is set")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Install Debian's package (apt-get install -y chromium) or point "
            "AESP_CHROMIUM at a Chromium binary; AESP_SKIP_BROWSER=1 skips the browser tests.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance):
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@dataclass
class PageLog:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def csp_violations(self) -> list[str]:
        return [m for m in self.console_errors if "Content Security Policy" in m]


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


def _screenshot_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:180] + ".png"


@pytest.fixture
def page(request, browser, live_server, page_log):
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", lambda msg: page_log.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page_log.page_errors.append(str(exc)))
    yield page
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        RESULTS_DIR.mkdir(exist_ok=True)
        try:
            page.screenshot(path=str(RESULTS_DIR / _screenshot_name(request.node.nodeid)), full_page=True)
        except Exception as exc:  # a screenshot must never hide the real failure
            print(f"screenshot failed: {exc}")
    context.close()
    if not failed:
        assert not page_log.csp_violations, f"Content-Security-Policy violations: {page_log.csp_violations}"
        assert not page_log.page_errors, f"uncaught JavaScript errors: {page_log.page_errors}"


def login_through_form(page, user, password: str | None = None) -> None:
    """Log `user` in through the real login form and wait for the home page."""
    from tests.factories import TEST_PASSWORD

    page.goto("/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password or TEST_PASSWORD)
    with page.expect_navigation():
        page.get_by_test_id("login-submit").click()
    page.get_by_test_id("account-name").wait_for()


@pytest.fixture
def login():
    """`login(page, user)`: log in through the login form (see login_through_form)."""
    return login_through_form
