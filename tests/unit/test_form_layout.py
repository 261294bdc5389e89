"""Every form page uses one layout (annotator_ui/_form_fields.html, _field.html): a label, the widget, the help
text tied to it, the errors under it; multiple choices are checkbox lists (with a filter box when long)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from aesplatform.annotation.models import Campaign
from tests import factories
from tests.support.modeling import logged_in_client
from tests.support.scenes import stored_scenes

pytestmark = pytest.mark.django_db

FORM_PAGES = ("ui:campaign_new", "ui:dataset_new", "ui:filter-run-new", "ui:training_job_new", "ui:imports")


@pytest.fixture
def curator(curator_user):
    return logged_in_client(curator_user)


def _form(html: str, testid: str) -> str:
    return html.split(f'data-testid="{testid}"')[1].split("</form>")[0]


@pytest.mark.parametrize("name", FORM_PAGES)
def test_every_form_page_has_the_one_layout(curator, name):
    html = curator.get(reverse(name)).content.decode()
    assert 'class="form"' in html and 'class="field' in html and 'class="form__actions"' in html
    for old in ("form-grid", 'class="helptext"', "errorlist"):
        assert old not in html, old
    # every help text is tied to its field
    for helptext_id in re.findall(r'<p class="field__help" id="([^"]+)"', html):
        assert f'aria-describedby="{helptext_id}"' in html, helptext_id


def test_errors_sit_under_their_field_and_non_field_errors_on_top(curator):
    response = curator.post(reverse("ui:campaign_new"), {"name": "", "mode": "expert", "redundancy": 0})
    assert response.status_code in (200, 400)
    form = _form(response.content.decode(), "campaign-form")
    name_field = form.split('data-field="name"')[1].split('data-field="mode"')[0]
    assert 'class="field field--invalid"' in form and '<ul class="field__errors" role="alert">' in name_field
    assert "This field is required." in name_field
    response = curator.post(reverse("ui:dataset_new"), {"name": "x", "kind": "expert", "min_ratings": 1,
                                                       "split_seed": 1, "test_ratio": 0.2})
    html = response.content.decode()
    assert response.status_code == 400 and 'data-testid="form-errors"' in _form(html, "version-form")


def test_annotator_picker_is_a_checkbox_list_with_a_filter_box(curator):
    people = [factories.annotator(username=f"person{i:02d}") for i in range(8)]
    form = _form(curator.get(reverse("ui:campaign_new")).content.decode(), "campaign-form")
    picker = form.split('data-field="annotators"')[1].split('data-field="instructions"')[0]
    assert "<select" not in picker and "<fieldset" in picker and "data-checklist-filter" in picker
    assert all(f">{p.username}</span>" in picker for p in people)
    assert picker.count('type="checkbox"') >= 8 and "0 selected" in picker
    # a short list has no filter box; its choices are still checkboxes
    campaign_form = _form(curator.get(reverse("ui:dataset_new")).content.decode(), "version-form")
    campaigns = campaign_form.split('data-field="campaigns"')[1].split('data-field="include_imported_labels"')[0]
    assert "data-checklist-filter" not in campaigns and "Nothing to choose from yet." in campaigns
    assert Campaign.objects.count() == 0


def test_the_annotator_picker_keeps_the_checked_people_after_an_error(curator):
    people = [factories.annotator(username=f"rater{i}") for i in range(2)]
    stored_scenes(1, status="approved")
    response = curator.post(reverse("ui:campaign_new"), {"name": "", "mode": "expert", "redundancy": 1,
                                                         "gold_ratio": 0, "image_limit": 5, "task_order": "random",
                                                         "lease_seconds": 600, "annotators": [people[1].pk]})
    picker = _form(response.content.decode(), "campaign-form").split('data-field="annotators"')[1]
    checked = re.findall(r'<input type="checkbox" name="annotators" value="(\d+)"[^>]*checked', picker)
    assert checked == [str(people[1].pk)] and "1 selected" in picker
