"""The image explorer in a browser, under the strict CSP: a gallery tile opens the detail page (labels, pre-scores
with "not available", the near-duplicate group), the image zooms and pans, and a lasso on the embedding map opens
the gallery on exactly the images inside it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from aesplatform.curation.models import EmbeddingMap, FilterResult, FilterRun
from tests import factories
from tests.support.datasets import make_image
from tests.support.explorer import explored_image

pytestmark = pytest.mark.browser


def _scale(page) -> float:
    return float(page.get_by_test_id("zoom").get_attribute("data-scale"))


def test_a_gallery_tile_opens_the_detail_page_with_labels_prescores_and_duplicates(page, login):
    scene = explored_image(raters=2, seed=2000)
    login(page, scene.curator)
    page.goto("/images/?status=in_campaign")
    page.get_by_test_id(f"tile-link-{scene.image.pk}").click()
    expect(page).to_have_url(re.compile(rf"/images/{scene.image.pk}/\?status=in_campaign$"))
    expect(page.get_by_test_id("image-title")).to_contain_text(scene.image.original_name)
    labels = page.get_by_test_id("label-table")
    for user in scene.annotators:
        expect(labels).to_contain_text(user.get_full_name())
    expect(page.get_by_test_id("consensus-col")).to_be_visible()
    lm_row = page.get_by_test_id("prescore-lm_score")
    expect(lm_row).to_contain_text("0.610")
    expect(lm_row).to_contain_text("not available")  # the released model has no LM head
    expect(page.get_by_test_id("random-weights")).to_be_visible()
    duplicate = scene.duplicates[0]
    expect(page.get_by_test_id("duplicates").locator("a[data-testid^='duplicate-']")).to_have_count(2)
    page.get_by_test_id(f"duplicate-{duplicate.pk}").click()
    expect(page).to_have_url(re.compile(rf"/images/{duplicate.pk}/$"))
    expect(page.get_by_test_id("duplicates").get_by_test_id(f"duplicate-{scene.image.pk}")).to_be_visible()


def test_the_full_size_image_zooms_and_pans(page, login):
    image = make_image(2100, source="zoom")
    login(page, factories.curator())
    page.goto(f"/images/{image.pk}/")
    box = page.get_by_test_id("zoom")
    expect(box).to_have_attribute("data-scale", re.compile(r"\d"))
    fit = _scale(page)
    page.get_by_test_id("zoom-in").click()
    assert _scale(page) == pytest.approx(fit * 1.25, rel=1e-3)
    expect(page.get_by_test_id("zoom-level")).to_have_text(f"{round(fit * 125)} %")
    bounds = box.bounding_box()
    page.mouse.move(bounds["x"] + bounds["width"] / 2, bounds["y"] + bounds["height"] / 2)
    page.mouse.wheel(0, -200)
    expect(box).not_to_have_attribute("data-scale", f"{fit * 1.25:.4f}")
    assert _scale(page) > fit * 1.25
    image_el = page.get_by_test_id("detail-image")
    before = image_el.evaluate("el => el.style.transform")
    page.mouse.down()
    page.mouse.move(bounds["x"] + bounds["width"] / 2 + 30, bounds["y"] + bounds["height"] / 2 + 20, steps=4)
    page.mouse.up()
    assert image_el.evaluate("el => el.style.transform") != before  # dragged: panned
    page.get_by_test_id("zoom-fit").click()
    assert _scale(page) == pytest.approx(fit, rel=1e-3)


def test_a_lasso_on_the_map_opens_the_gallery_on_exactly_those_images(page, login):
    curator = factories.curator()
    run = FilterRun.objects.create(name="Map run", created_by=curator, clip_checkpoint="/ckpt/vit.pt")
    images = [factories.ImageFactory() for _ in range(6)]
    now = timezone.now()
    for image in images:
        FilterResult.objects.create(run=run, image=image, scored_at=now,
                                    embedding=np.ones(8, dtype=np.float16).tobytes())
    # three images in the top-left corner, three in the bottom-right one
    spots = [(0.05, 0.1), (0.15, 0.05), (0.2, 0.2), (0.8, 0.85), (0.9, 0.9), (0.95, 0.8)]
    EmbeddingMap.objects.create(run=run, method="pca", point_count=6,
                                points=[[i.pk, x, y] for i, (x, y) in zip(images, spots)])
    login(page, curator)
    page.goto("/images/map/")
    canvas = page.get_by_test_id("map-canvas")
    expect(canvas).to_have_attribute("data-ready", "true")
    expect(canvas).to_have_attribute("data-points", "6")
    b = canvas.bounding_box()
    pad = 20

    def at(x, y):
        return b["x"] + pad + x * (b["width"] - 2 * pad), b["y"] + pad + y * (b["height"] - 2 * pad)

    page.mouse.move(*at(-0.01, -0.01))
    page.mouse.down()
    for corner in ((0.4, -0.01), (0.4, 0.4), (-0.01, 0.4), (-0.01, 0.0)):
        page.mouse.move(*at(*corner), steps=6)
    page.mouse.up()
    expect(page.get_by_test_id("map-count")).to_have_text("3 images selected.")
    page.get_by_test_id("map-colour").select_option("proposal")  # recolouring keeps the selection
    expect(canvas).to_have_attribute("data-selected", "3")
    with page.expect_navigation():
        page.get_by_test_id("map-open").click()
    expect(page.get_by_test_id("selection-note")).to_be_visible()
    tiles = page.get_by_test_id("gallery").locator("li.tile")
    expect(tiles).to_have_count(3)
    shown = {int(t.get_attribute("data-testid").removeprefix("image-")) for t in tiles.all()}
    assert shown == {i.pk for i in images[:3]}


def test_the_map_says_to_run_a_filter_run_first(page, login):
    login(page, factories.curator())
    page.goto("/images/")
    page.get_by_test_id("open-map").click()
    expect(page.get_by_test_id("map-empty")).to_contain_text("run a filter run first")


def test_previous_and_next_walk_the_filtered_gallery(page, login):
    from aesplatform.catalog.models import ImageStatus

    approved = [make_image(2200 + i, source="walk", status=ImageStatus.APPROVED) for i in range(3)]
    make_image(2210, source="walk", status=ImageStatus.REJECTED)  # newest, but filtered out
    login(page, factories.curator())
    page.goto("/images/?status=approved")
    page.get_by_test_id(f"tile-link-{approved[2].pk}").click()  # newest approved: no previous
    expect(page.get_by_test_id("image-prev")).to_have_count(0)
    page.get_by_test_id("image-next").click()
    expect(page).to_have_url(re.compile(rf"/images/{approved[1].pk}/\?status=approved$"))
    page.get_by_test_id("image-next").click()
    expect(page).to_have_url(re.compile(rf"/images/{approved[0].pk}/\?status=approved$"))
    expect(page.get_by_test_id("image-next")).to_have_count(0)
    expect(page.get_by_test_id("zoom")).to_have_attribute("data-scale", re.compile(r"\d"))  # the script has run
    page.get_by_test_id("zoom").focus()
    fit = _scale(page)
    page.keyboard.press("+")
    assert _scale(page) == pytest.approx(fit * 1.25, rel=1e-3)
    page.get_by_test_id("back-to-gallery").click()
    expect(page).to_have_url(re.compile(r"/images/\?status=approved$"))
