"""Values stored as identifiers are shown in words: export options, sort orders."""

from __future__ import annotations

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
