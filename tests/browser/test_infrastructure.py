"""The browser fixtures themselves: the layout's Content-Security-Policy is enforced, and violations are seen."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_inline_script_is_blocked_and_reported(page, page_log):
    page.goto("/login/")
    page.evaluate(
        """() => { const s = document.createElement('script'); s.textContent = 'window.__inline_ran = true';
                   document.body.appendChild(s); }"""
    )
    page.wait_for_timeout(100)
    assert page.evaluate("() => window.__inline_ran === undefined")  # the policy blocked it
    assert page_log.csp_violations, page_log.console_errors  # and the page fixture saw the violation
    page_log.console_errors.clear()  # this test provoked it on purpose


def test_static_files_are_served_by_the_live_server(page):
    for path in ("/static/vendor/htmx.min.js", "/static/annotator_ui/css/app.css", "/static/annotator_ui/js/app.js"):
        response = page.request.get(path)
        assert response.status == 200, path
