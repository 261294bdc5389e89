"""In a browser: the annotator picker's filter box narrows the list and the count follows the ticks; Compare,
reached from the model list, opens against the promoted model (never the model itself), and the user picks another."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aesplatform.modeling.models import ModelVersion
from tests import factories

pytestmark = pytest.mark.browser


def test_the_annotator_picker_filters_and_counts(page, login):
    curator = factories.curator()
    for name in ("anna", "bernd", "carla", "dmitri", "emma", "frank", "greta"):
        factories.annotator(username=name)
    login(page, curator)
    page.goto("/campaigns/new/")
    picker = page.get_by_test_id("checklist-annotators")
    page.get_by_label("Filter annotators").fill("ma")  # emma only (checked ones stay visible)
    expect(picker.locator(".checklist__item:visible")).to_have_count(1)
    expect(picker.get_by_text("emma")).to_be_visible()
    page.get_by_label("emma").check()
    page.get_by_label("Filter annotators").press("Enter")  # filters, does not submit
    expect(page).to_have_url(re.compile(r"/campaigns/new/$"))
    page.get_by_label("Filter annotators").fill("an")  # anna, frank; emma stays: she is ticked
    expect(picker.locator(".checklist__item:visible")).to_have_count(3)
    expect(page.locator("[data-checklist-count]")).to_have_text("1 selected")
    page.get_by_label("anna").check()
    expect(page.locator("[data-checklist-count]")).to_have_text("2 selected")


def test_compare_opens_against_the_promoted_model_and_the_user_picks_another(page, login, tmp_path):
    curator = factories.curator()
    metrics = {"overall": {"metavoter": {"plcc": 0.7, "srcc": 0.6, "rmse": 0.2}}}
    older = ModelVersion.objects.create(name="older", checkpoint_path=str(tmp_path), metrics=metrics)
    promoted = ModelVersion.objects.create(name="current", checkpoint_path=str(tmp_path), promoted=True,
                                           metrics=metrics)
    ModelVersion.objects.create(name="candidate", checkpoint_path=str(tmp_path),
                                metrics={"overall": {"metavoter": {"plcc": 0.8, "srcc": 0.7, "rmse": 0.1}}})
    login(page, curator)
    page.goto("/models/")
    page.get_by_role("row", name="candidate").get_by_test_id("compare-link").click()
    expect(page.get_by_test_id("compare-a")).to_have_text("candidate")
    expect(page.get_by_test_id("compare-b")).to_have_text("current")
    expect(page.get_by_test_id("compare-table")).to_contain_text("0.800")
    page.get_by_label("Compare with").select_option(str(older.pk))
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_test_id("compare-b")).to_have_text("older")
    # the promoted model's own page: Compare opens against another model, not itself
    page.goto(f"/models/{promoted.pk}/")
    page.get_by_test_id("compare").click()
    expect(page.get_by_test_id("compare-a")).to_have_text("current")
    expect(page.get_by_test_id("compare-b")).to_have_text("older")
