"""Screenshots of the main pages, for the README: not a test of behaviour, and skipped unless AESP_SCREENSHOTS_DIR
names the folder to write into (scripts/take_screenshots.py sets it to docs/screenshots and runs this file).

It builds a small scene like the tests do (a campaign rated by three annotators, with its consensus; a filter run
with a review batch; pre-scores of a promoted model), serves it with pytest-django's live server and saves
<page>-<width>x<height>.png at each size. A page whose URL name does not exist (yet) is skipped and said so.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from django.urls import NoReverseMatch, reverse

from aesplatform.annotation import services as annotation_services
from aesplatform.annotation.models import CampaignMode
from aesplatform.curation import services as curation_services
from aesplatform.modeling.models import ModelVersion, Prescore
from model_core.standard import DIMENSIONS
from tests import factories
from tests.browser.conftest import CHROMIUM_ARGS, login_through_form
from tests.support.curation import PIXEL_ONLY
from tests.support.scenes import stored_scenes, tiny_run_kwargs

OUT = os.environ.get("AESP_SCREENSHOTS_DIR", "")
SIZES = ((1366, 768), (1920, 1080))

pytestmark = [pytest.mark.browser, pytest.mark.screenshots,
              pytest.mark.skipif(not OUT, reason="screenshots only: set AESP_SCREENSHOTS_DIR")]


def _scene(tmp_path: Path) -> dict:
    """Users, a rated campaign with consensus and pre-scores, a filter run with its review batch."""
    rng = np.random.default_rng(7)
    curator = factories.curator(username="curator", first_name="Cora")
    annotators = [factories.annotator(username=name) for name in ("anna", "ben", "chiara")]
    images = stored_scenes(16, status="approved", source="portraits")
    campaign = annotation_services.campaign_create(
        name="Spring portraits", mode=CampaignMode.EXPERT, created_by=curator, image_ids=[i.pk for i in images],
        redundancy=3, annotators=[*annotators, curator], state="active", show_prescores=True,
        instructions="Rate the person's aesthetics on each dimension; the photo's technique counts only where a "
                     "dimension says so.")
    truth = {i.pk: rng.uniform(0.25, 0.85, len(DIMENSIONS)) for i in images}
    for k, annotator in enumerate(annotators):
        bias = (k - 1) * 0.04
        for _ in range(12):
            assignment = annotation_services.task_lease_next(campaign=campaign, annotator=annotator)
            if assignment is None:
                break
            values = np.clip(truth[assignment.task.image_id] + bias + rng.normal(0, 0.05, len(DIMENSIONS)), 0, 1)
            annotation_services.annotation_submit(
                assignment_id=assignment.pk, annotator=annotator, idempotency_key=str(uuid.uuid4()),
                scores={d.key: round(float(v), 3) for d, v in zip(DIMENSIONS, values)}, time_spent_ms=9000)
    annotation_services.consensus_update_for_campaign(campaign=campaign)

    model = ModelVersion.objects.create(name="tiny-cpu-3", checkpoint_path=str(tmp_path), promoted=True,
                                        metrics={"overall": {"metavoter": {"plcc": 0.81, "srcc": 0.78, "rmse": 0.11}}})
    Prescore.objects.bulk_create([
        Prescore(image=image, model_version=model, lm_score=float(np.clip(truth[image.pk][-1] + 0.05, 0, 1)),
                 regression_score=float(truth[image.pk][-1]), metavoter_score=float(truth[image.pk][-1]),
                 uncertainty=0.1, **{d.key: float(v) for d, v in zip(DIMENSIONS, truth[image.pk])})
        for image in images])

    imported = stored_scenes(8, start=100, source="upload-march")
    run = curation_services.filter_run_create(created_by=curator, image_ids=[i.pk for i in imported],
                                              thresholds=PIXEL_ONLY, enqueue=False, **tiny_run_kwargs())
    curation_services.filter_run_execute(run_id=run.pk, device="cpu", num_workers=0)
    return {"curator": curator, "campaign": campaign, "image": images[0], "run": run}


def _pages(scene: dict) -> list[tuple[str, str, list]]:
    campaign = scene["campaign"]
    return [("annotate", "ui:annotate_campaign", [campaign.pk]),
            ("explorer", "ui:image_detail", [scene["image"].pk]),
            ("review", "ui:review_stream", [campaign.pk]),
            ("dashboard", "ui:campaign_detail", [campaign.pk])]


def test_take_screenshots(browser, live_server, tmp_path):
    out = Path(OUT)
    out.mkdir(parents=True, exist_ok=True)
    assert "--no-sandbox" in CHROMIUM_ARGS  # the session browser runs Debian's Chromium with these flags
    scene = _scene(tmp_path)
    taken, skipped = [], []
    for width, height in SIZES:
        context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height},
                                      locale="en-US", timezone_id="UTC")
        page = context.new_page()
        login_through_form(page, scene["curator"])
        for name, url_name, args in _pages(scene):
            try:
                url = reverse(url_name, args=args)
            except NoReverseMatch:
                skipped.append(f"{name} ({url_name} does not exist)")
                continue
            response = page.goto(url)
            assert response is not None and response.ok, f"{url}: {response and response.status}"
            page.wait_for_load_state("networkidle")
            page.evaluate("document.fonts && document.fonts.ready")
            path = out / f"{name}-{width}x{height}.png"
            page.screenshot(path=str(path))
            taken.append(path.name)
        context.close()
    print(f"\nscreenshots in {out}: {', '.join(taken)}")
    if skipped:
        print("skipped: " + "; ".join(sorted(set(skipped))))
    assert taken
