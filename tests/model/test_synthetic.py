"""The synthetic generator: deterministic, in the HumanBeauty layout, scores tied to visible properties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_core.standard import DIMENSION_KEYS, LEVELS, expert_answer, overall_answer, score_to_level
from model_core.synthetic import Factors, fingerprint, generate_image, render, scores_from_factors, write_humanbeauty


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_writes_identical_files_and_other_seed_differs(tmp_path):
    a = write_humanbeauty(tmp_path / "a", n_overall=6, n_expert=6, seed=7, size=(48, 48))
    b = write_humanbeauty(tmp_path / "b", n_overall=6, n_expert=6, seed=7, size=(48, 48))
    c = write_humanbeauty(tmp_path / "c", n_overall=6, n_expert=6, seed=8, size=(48, 48))
    assert fingerprint(a.root) == fingerprint(b.root)
    assert fingerprint(a.root) != fingerprint(c.root)


def test_layout_matches_design_formats(tmp_path):
    summary = write_humanbeauty(tmp_path, n_overall=10, n_expert=10, seed=0, size=(40, 32), test_fraction=0.3)
    assert (summary.n_train, summary.n_test) == (14, 6)
    l58 = _read(tmp_path / "HumanBeauty-58K" / "label.jsonl")
    l50 = _read(tmp_path / "HumanBeauty-50K" / "label.jsonl")
    assert len(l58) == len(l50) == 10
    for rec in l58:
        assert set(rec) == {"image_name", "source", "score", "text_level"}
        assert isinstance(rec["score"], float) and rec["text_level"] == score_to_level(rec["score"])
        assert "/" not in rec["image_name"]
        assert Image.open(tmp_path / "HumanBeauty-58K" / "images" / rec["image_name"]).size == (40, 32)
    for rec in l50:
        assert set(rec) == {"image_name", "source", "score"}
        assert len(rec["score"]) == len(DIMENSION_KEYS) and all(0.0 <= s <= 1.0 for s in rec["score"])
    split = _read(tmp_path / "train_label.jsonl") + _read(tmp_path / "test_label.jsonl")
    assert len(split) == 20
    for rec in split:
        assert (tmp_path / rec["image_name"]).is_file()
        assert rec["is_expert"] is rec["image_name"].startswith("HumanBeauty-50K/")
    swift = _read(tmp_path / "swift_train.jsonl")
    assert len(swift) == 14
    for rec in swift:
        assert set(rec) == {"query", "response", "history", "images", "scores", "is_expert"}
        assert rec["query"] == "" and rec["history"] == [] and Path(rec["images"][0]).is_absolute()
        assert len(rec["scores"]) == 12 and rec["is_expert"] in (0, 1)
        if rec["is_expert"]:
            assert rec["response"] == expert_answer(rec["scores"])
        else:
            assert rec["scores"][:11] == [0.0] * 11
            assert rec["response"] == overall_answer(rec["scores"][-1])


def test_scores_follow_visible_properties():
    rng = np.random.default_rng(0)
    brightness, facial_brightness, levels = [], [], set()
    for _ in range(80):
        image, scores = generate_image(rng=rng, size=(48, 48))
        brightness.append(np.asarray(image, dtype=np.float32).mean())
        facial_brightness.append(scores[0])
        levels.add(score_to_level(scores[-1]))
    assert np.corrcoef(brightness, facial_brightness)[0, 1] > 0.7
    assert len(levels) >= 4, f"overall scores should spread over the levels, got {levels}"


def test_blur_factor_removes_high_frequencies():
    base = dict(light=0.8, skin=0.5, structure=0.5, contour=0.5, outfit=0.5, body=0.5, framing=0.5,
                tidiness=0.2, contrast=0.8)
    sharp = np.asarray(render(Factors(sharpness=1.0, **base), rng=np.random.default_rng(1), size=(96, 96)), float)
    soft = np.asarray(render(Factors(sharpness=0.0, **base), rng=np.random.default_rng(1), size=(96, 96)), float)
    energy = lambda a: np.abs(np.diff(a.mean(-1), axis=1)).mean()  # noqa: E731
    assert energy(sharp) > 1.5 * energy(soft)


def test_noiseless_scores_are_valid_levels():
    scores = scores_from_factors(Factors(*([1.0] * 10)))
    assert scores.shape == (12,) and scores.min() >= 0.05 and scores.max() <= 0.95
    assert score_to_level(float(scores[-1])) == LEVELS[-1]


@pytest.mark.parametrize("bad", [dict(n_overall=0, n_expert=0), dict(n_overall=-1, n_expert=3)])
def test_rejects_empty_or_negative_counts(tmp_path, bad):
    with pytest.raises(ValueError, match="positive number"):
        write_humanbeauty(tmp_path, seed=0, **bad)
