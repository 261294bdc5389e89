"""Values stored as identifiers are shown in words: export options, sort orders."""

from __future__ import annotations

import pytest

from annotator_ui.templatetags.wording import export_options, ordering_label


def test_export_options_in_words():
    text = export_options({"archive": True, "image_paths": "relative", "images": "hardlink", "prompt_seed": 3,
                           "prompts": False, "target_dir": ""})
    assert text == "Images: hard links · Archive: yes · Image paths: relative to the export · Prompts: no"
    text = export_options({"archive": False, "image_paths": "absolute", "images": "copy", "prompts": True,
                           "prompt_seed": 7, "target_dir": "/data/out"})
    assert text == ("Images: copies · Archive: no · Image paths: absolute server paths · Prompts: yes · "
                    "Prompt seed: 7 · Folder: /data/out")
    assert "=" not in text and "True" not in text
    assert export_options({}) == ""


def test_sort_orders_in_words():
    assert ordering_label("-metavoter_score") == "MetaVoter score, high to low"
    assert ordering_label("metavoter_score") == "MetaVoter score, low to high"
    assert ordering_label("-id") == "Scoring order, newest first"
    assert ordering_label("-some_column") == "Some column, high to low"


def test_counted_puts_the_noun_in_the_right_number():
    from aesplatform.common.text import counted

    assert counted(1, "annotator") == "1 annotator"
    assert counted(2, "annotator") == "2 annotators" and counted(0, "image") == "0 images"
    assert counted(3, "batch", "batches") == "3 batches"


@pytest.mark.django_db
def test_one_of_a_thing_is_singular_on_the_pages(admin_user):
    from django.urls import reverse

    from tests import factories
    from tests.support.annotation import campaign_for
    from tests.support.modeling import logged_in_client

    annotator = factories.annotator()
    campaign = campaign_for([annotator], images=1, redundancy=1)
    admin = logged_in_client(admin_user)
    page = admin.get(reverse("ui:campaign_detail", args=[campaign.pk])).content.decode()
    assert "1 annotator per image" in page and "1 annotators" not in page
    home = admin.get(reverse("ui:home")).content.decode()
    assert '<span class="stat__value">1</span><span class="stat__label">annotator</span>' in home
    assert '<span class="stat__value">1</span><span class="stat__label">admin</span>' in home
    assert "1 images" not in home
