"""The modeling pages in a browser: a curator starts a tiny training job from the form, the job page follows it by
htmx polling (progress, loss curve) until it has run, then the curator opens the model and promotes it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aesplatform.modeling.models import ModelVersion, TrainingJob
from aesplatform.modeling.services import training_job_run
from tests import factories
from tests.support.modeling import frozen_version, synthetic_images

pytestmark = pytest.mark.browser


def test_a_curator_trains_follows_and_promotes(page, login, settings, tmp_path):
    settings.AESP_TRAINING_ROOT = tmp_path / "training"
    curator = factories.curator()
    version = frozen_version(synthetic_images(12), user=curator)
    login(page, curator)
    page.goto("/models/")
    page.get_by_test_id("new-job").click()
    page.get_by_label("Dataset version").select_option(str(version.pk))
    page.get_by_label("Max steps").fill("3")
    with page.expect_navigation(url=re.compile(r"/models/jobs/\d+/$")):
        page.get_by_test_id("start-job").click()
    live = page.get_by_test_id("job-live")
    expect(live).to_have_attribute("data-state", "pending")
    training_job_run(job_id=TrainingJob.objects.get().pk)  # what the gpu worker does; the open page polls for it
    expect(live).to_have_attribute("data-state", "succeeded", timeout=15_000)
    expect(page.get_by_test_id("job-step")).to_contain_text("3 / 3")
    expect(page.get_by_test_id("loss-curve")).to_be_visible()
    expect(page.get_by_test_id("job-report")).to_be_visible()
    page.get_by_test_id("job-model").click()
    page.get_by_test_id("promote").click()
    expect(page.get_by_test_id("promoted-badge")).to_be_visible()
    assert ModelVersion.objects.get().promoted
