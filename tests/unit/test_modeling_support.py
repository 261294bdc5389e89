"""Helpers of the modeling tests (synthetic images stored as catalog images, frozen dataset versions), and the
unit tests of the pure parts: clipping into [0, 1], histograms, presets."""

from __future__ import annotations

import pytest

from aesplatform.common.exceptions import ServiceError

# --- unit tests -------------------------------------------------------------------------------------------------


def test_prescore_rows_clip_every_score_into_unit_range():
    from aesplatform.modeling.services import prescore_rows
    from model_core.scoring import ImageScore

    scores = [ImageScore(path="a", lm_score=1.3, regression_score=-0.2, expert_scores=[1.5] * 11 + [-0.1],
                         metavoter_score=1.01, uncertainty=0.3),
              ImageScore(path="b", error="unreadable")]
    rows = prescore_rows(5, [(1, "a"), (2, "b")], scores)
    assert len(rows) == 1
    row = rows[0]
    assert (row.lm_score, row.regression_score, row.metavoter_score) == (1.0, 0.0, 1.0)
    assert row.scores_list() == [1.0] * 11 + [0.0]
    assert row.image_id == 1 and row.model_version_id == 5


def test_remote_code_scores_without_regression_head_store_null_not_the_other_heads():
    from aesplatform.modeling.services import prescore_rows
    from model_core.scoring import ImageScore

    row = prescore_rows(1, [(1, "a")], [ImageScore(path="a", lm_score=0.4, expert_scores=[0.6] * 12,
                                                   metavoter_score=0.5)])[0]
    assert row.lm_score == 0.4 and row.regression_score is None and row.uncertainty is None


def test_histogram_counts_edges():
    from aesplatform.modeling.selectors import histogram

    assert histogram([0.0, 0.04, 0.05, 0.999, 1.0], bins=20) == [2, 1] + [0] * 17 + [2]


@pytest.mark.parametrize("preset,overrides,code", [
    ("huge", {}, "unknown_preset"),
    ("tiny-cpu", {"learning_rate": 1}, "unknown_config_key"),
    ("tiny-cpu", {"epochs": "7"}, "invalid_config"),
    ("tiny-cpu", {"batch_size": 0}, "invalid_config"),
    ("tiny-cpu", {"backbone_path": "/x"}, "invalid_config"),
    ("1B-LoRA", {}, "backbone_missing"),
    ("8B-LoRA", {"backbone_path": "/no/such/InternVL2-8B"}, "backbone_missing"),
    ("tiny-cpu", {"recipe": "swift"}, "invalid_config"),
])
def test_bad_presets_and_configs_are_refused(preset, overrides, code):
    from aesplatform.modeling.presets import resolve_config

    with pytest.raises(ServiceError) as info:
        resolve_config(preset=preset, overrides=overrides)
    assert info.value.code == code


def test_lora_preset_accepts_a_local_backbone_dir(tmp_path):
    from aesplatform.modeling.presets import resolve_config

    (tmp_path / "config.json").write_text("{}")
    config = resolve_config(preset="1B-LoRA", overrides={"backbone_path": str(tmp_path), "epochs": 2})
    assert config["model"]["backbone"]["source"] == str(tmp_path)
    assert config["train"]["epochs"] == 2 and config["model"]["lora"] is not None
    assert config["model"]["chat"]["recipe"] == "reference"  # InternVL2 weights: the reference recipe by default
    ours = resolve_config(preset="1B-LoRA", overrides={"backbone_path": str(tmp_path), "recipe": "platform"})
    assert ours["model"]["chat"]["recipe"] == "platform"


def test_tiny_preset_trains_with_our_recipe():
    from aesplatform.modeling.presets import resolve_config

    assert resolve_config(preset="tiny-cpu", overrides={})["model"]["chat"]["recipe"] == "platform"


def test_json_safe_turns_nan_and_infinities_into_null():
    from aesplatform.modeling.services import json_safe

    assert json_safe({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf"), "e": "x"}}) == \
        {"a": None, "b": [1.0, None], "c": {"d": None, "e": "x"}}


def test_training_processes_are_bounded_by_the_setting_and_must_divide_the_batch(settings):
    from aesplatform.modeling.presets import resolve_config

    assert resolve_config(preset="tiny-cpu", overrides={})["processes"] == 1
    settings.AESP_TRAINING_MAX_PROCESSES = 4
    assert resolve_config(preset="tiny-cpu", overrides={"processes": 4})["processes"] == 4
    for overrides, message in (({"processes": 5}, "between 1 and 4"), ({"processes": 0}, "between 1 and 4"),
                               ({"processes": 3}, "batch_size 16 cannot be shared out evenly across 3"),
                               ({"processes": 2, "batch_size": 5}, "batch_size 5 cannot"),
                               ({"processes": "2"}, "must be int")):
        with pytest.raises(ServiceError, match=message) as info:
            resolve_config(preset="tiny-cpu", overrides=overrides)
        assert info.value.code == "invalid_config"
    settings.AESP_TRAINING_MAX_PROCESSES = 1
    with pytest.raises(ServiceError, match=r"between 1 and 1 \(AESP_TRAINING_MAX_PROCESSES\)"):
        resolve_config(preset="tiny-cpu", overrides={"processes": 2})
