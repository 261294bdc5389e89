"""With the job queue (Redis) stopped, annotation in the browser keeps working: the annotate page loads, two images
are rated with the keyboard and both annotations are stored (their consensus update is owed, not lost: see
tests/integration/faults/test_redis_down.py for the catch-up and the refused job starts).

The server is gunicorn on the test database with a private redis-server as its broker; the machine's shared Redis
is never stopped.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import call_command
from playwright.sync_api import expect

from aesplatform.annotation.models import Annotation
from tests import factories
from tests.browser.conftest import DEFAULT_TIMEOUT_MS, VIEWPORT, login_through_form
from tests.integration.faults.services import Gunicorn, PrivateRedis, current_database_url, web_env
from tests.support.browser import rating_campaign

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_with_redis_stopped_an_annotator_rates_in_the_browser_and_nothing_is_lost(browser, tmp_path):
    call_command("collectstatic", interactive=False, verbosity=0)  # gunicorn serves them as in production (whitenoise)
    redis = PrivateRedis(tmp_path)
    redis.start()
    annotator = factories.annotator()
    campaign = rating_campaign(annotator, images=2, mode="overall")
    env = web_env(DATABASE_URL=current_database_url(), CELERY_BROKER_URL=redis.url(), CELERY_RESULT_BACKEND=redis.url(),
                  DJANGO_MEDIA_ROOT=str(settings.MEDIA_ROOT))
    web = Gunicorn(env, tmp_path / "gunicorn.log")
    web.start()
    context = browser.new_context(base_url=web.url, viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    errors: list[str] = []
    try:
        redis.stop()
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        login_through_form(page, annotator)
        page.goto(f"/annotate/{campaign.id}/")
        expect(page.get_by_test_id("task-image")).to_have_class("annotate__image is-ready", timeout=20_000)
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("session-rated")).to_have_text("1")
        page.keyboard.press("2")
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("done")).to_be_visible()
        stored = sorted(Annotation.objects.filter(annotator=annotator).values_list("comprehensive", flat=True))
        assert stored == pytest.approx([0.3, 0.7])
        assert not errors, errors
        assert "job queue unavailable" in web.logs()  # the owed consensus update was logged, not raised
    finally:
        context.close()
        web.stop()
        redis.stop()
