"""The filtering engine alone (no database): faces on real photos, pixel checks, CLIP mechanics, duplicates."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from aesplatform.curation.engine import dedup, pipeline, prompts, proposals, signals
from aesplatform.curation.engine.clip import TINY_MODEL, CheckpointError, ClipScorer, checkpoint_check
from tests.support.scenes import jpeg_bytes, scene

ENGINE = Path(__file__).resolve().parents[2] / "platform" / "aesplatform" / "curation" / "engine"


def test_face_detection_on_real_photos():
    astronaut = signals.pixel_signals(skimage.data.astronaut())
    assert astronaut.face_count == 1
    assert 0.01 < astronaut.largest_face_fraction < 0.2  # her face is a few percent of the picture
    for landscape in (skimage.data.coffee(), scene(3, 640, 480)):
        assert signals.pixel_signals(landscape).face_count == 0


def test_faces_survive_jpeg_draft_decoding():
    data = jpeg_bytes(np.kron(skimage.data.astronaut(), np.ones((4, 4, 1), dtype=np.uint8)))  # 2048 px
    rgb = signals.decode_rgb(data, min_short=224)
    assert max(rgb.shape[:2]) == 512  # DCT-scaled by 4 at decode, not decoded in full
    assert signals.pixel_signals(rgb).face_count == 1


def test_blur_and_exposure_signals():
    sharp = skimage.data.coffee()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    assert signals.pixel_signals(blurred).blur_variance < signals.pixel_signals(sharp).blur_variance / 10
    dark = signals.pixel_signals((sharp // 20).astype(np.uint8)).exposure
    bright = signals.pixel_signals(np.full((100, 100, 3), 250, np.uint8)).exposure
    assert dark["under"] > 0.9 and dark["over"] == 0 and bright["over"] == 1.0


def test_pixel_digest_equal_for_identical_pixels_only():
    a = scene(1)
    assert signals.pixel_signals(a).digest == signals.pixel_signals(a.copy()).digest
    b = a.copy()
    b[0, 0] = 255 - b[0, 0]
    assert signals.pixel_signals(a).digest != signals.pixel_signals(b).digest


def test_prompt_set_validation():
    prompt_set = prompts.prompt_set_validate(prompts.default_prompt_set())
    assert set(prompt_set["groups"]) == {"person_subject", "single_person", "photograph", "quality_problems"}
    for bad, message in [
        ([], "must be an object"),
        ({"groups": {}}, "version"),
        ({"version": "1", "groups": {}}, "at least one group"),
        ({"version": "1", "groups": {"bad name": {"positive": ["a"], "negative": ["b"]}}}, "identifier"),
        ({"version": "1", "groups": {"g": {"positive": ["a"], "negative": [""]}}}, "non-empty string"),
    ]:
        with pytest.raises(prompts.PromptSetError, match=message):
            prompts.prompt_set_validate(bad)


SIGNALS = {"width": 800, "height": 600, "face_count": 1, "largest_face_fraction": 0.05, "blur_variance": 400.0,
           "exposure": {"under": 0.01, "over": 0.0},
           "clip": {"person_subject": 0.9, "single_person": 0.8, "photograph": 0.95, "quality_problems": 0.1}}


def test_proposals_reasons_and_uncertainty():
    t = proposals.default_thresholds()
    keep = proposals.proposal_compute(SIGNALS, t)
    assert keep.decision == "keep" and keep.reasons[0] == "passes every check" and 0 <= keep.uncertainty < 0.5
    borderline = proposals.proposal_compute({**SIGNALS, "clip": {**SIGNALS["clip"], "photograph": 0.52}}, t)
    assert borderline.decision == "keep" and borderline.uncertainty > 0.9
    assert "photograph" in borderline.reasons[1]
    groups = proposals.proposal_compute({**SIGNALS, "face_count": 3}, t)
    assert groups.decision == "reject" and groups.reasons == ["3 faces detected (wanted 1)"]
    many = proposals.proposal_compute(
        {**SIGNALS, "height": 100, "width": 120, "blur_variance": 2.0, "duplicate_of": 7, "exact_duplicate": True}, t
    )
    assert many.decision == "reject" and many.uncertainty == 0.0 and len(many.reasons) == 3
    assert "exact duplicate of image 7 (that one is kept)" in many.reasons
    broken = proposals.proposal_compute({"error": "file missing: x.jpg"}, t)
    assert broken.decision == "reject" and "file missing" in broken.reasons[0]


def test_threshold_validation():
    groups = list(prompts.DEFAULT_PROMPT_SET["groups"])
    merged = proposals.thresholds_validate(
        {"min_blur_variance": 10, "clip": {"photograph": {"max": 0.2}}}, groups=groups
    )
    assert merged["min_blur_variance"] == 10.0 and merged["clip"]["photograph"] == {"max": 0.2}
    assert merged["min_short_side"] == proposals.DEFAULT_THRESHOLDS["min_short_side"]
    for bad, message in [
        ({"nope": 1}, "Unknown threshold"), ({"min_faces": 1.5}, "whole number"), ({"max_aspect_ratio": "x"}, "number"),
        ({"near_duplicate_cosine": 2}, "between"), ({"clip": {"photograph": {"min": 1.5}}}, "probability"),
        ({"clip": {"photograph": {"above": 0.5}}}, "'min'"), ({"clip": {"other": {"min": 0.5}}}, "no prompt group"),
    ]:
        with pytest.raises(proposals.ThresholdError, match=message):
            proposals.thresholds_validate(bad, groups=groups)


def test_duplicate_groups_with_the_ann_index(monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    near = base[:5] + 0.01 * rng.normal(size=(5, 32)).astype(np.float32)
    x = np.concatenate([base, near / np.linalg.norm(near, axis=1, keepdims=True)])
    digests = [f"d{i}" for i in range(205)]
    digests[204] = digests[10]  # pixel-identical to row 10, whatever its embedding
    rank = [(i,) for i in range(205)]
    monkeypatch.setattr(dedup, "HNSW_MIN_SIZE", 50)  # exercise the HNSW index, not the flat one
    groups = dedup.duplicate_groups(x, digests, threshold=0.98, rank=rank)
    for i in range(5):
        assert groups.group_of[i] == groups.group_of[200 + i] == 200 + i  # the higher rank is kept
    assert groups.group_of[10] == groups.group_of[204] == 204 and groups.exact[10] and groups.exact[204]
    assert sum(g != i for i, g in enumerate(groups.group_of)) == 6
    assert dedup.similar_pairs(x[:1], threshold=0.5) == []


@pytest.fixture(scope="module")
def tiny_scorer():
    return ClipScorer(model_name=TINY_MODEL, checkpoint="", prompt_set=prompts.default_prompt_set())


def test_clip_scorer_mechanics(tiny_scorer):
    out = tiny_scorer.encode(torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8))
    assert out.embeddings.shape == (3, 64) and np.allclose(np.linalg.norm(out.embeddings, axis=1), 1, atol=1e-5)
    assert all(set(p) == set(prompts.DEFAULT_PROMPT_SET["groups"]) and all(0 <= v <= 1 for v in p.values())
               for p in out.probabilities)
    assert tiny_scorer.dtype == torch.float32 and tiny_scorer.image_size == 64


def test_the_scorer_recomputes_its_text_features_only_for_another_prompt_set(tiny_scorer):
    default = prompts.default_prompt_set()
    features = tiny_scorer.text_features
    tiny_scorer.use_prompts(prompts.default_prompt_set())
    assert tiny_scorer.text_features is features  # the same prompts (another dict): nothing recomputed
    first = next(iter(default["groups"]))
    fewer = {**default, "groups": {first: default["groups"][first]}}
    try:
        tiny_scorer.use_prompts(fewer)
        assert tiny_scorer.text_features is not features and set(tiny_scorer.groups) == {first}
    finally:
        tiny_scorer.use_prompts(default)  # the fixture is shared by the module
    assert set(tiny_scorer.groups) == set(default["groups"])


def test_checkpoint_check(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    state = open_clip.create_model(TINY_MODEL).state_dict()
    good = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(good))
    checkpoint_check(TINY_MODEL, str(good))
    scorer = ClipScorer(model_name=TINY_MODEL, checkpoint=str(good), prompt_set=prompts.default_prompt_set())
    assert torch.equal(scorer.model.visual.conv1.weight, state["visual.conv1.weight"])
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_check(TINY_MODEL, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="must be absolute"):
        checkpoint_check(TINY_MODEL, "tiny.safetensors")
    with pytest.raises(CheckpointError, match="does not match CLIP model ViT-B-32"):
        checkpoint_check("ViT-B-32", str(good))
    with pytest.raises(CheckpointError, match="Unknown CLIP model"):
        checkpoint_check("ViT-XL-99", "")


def test_pipeline_scores_each_item_once_and_reports_bad_files(tmp_path, tiny_scorer):
    paths = []
    for i in range(7):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(jpeg_bytes(scene(i)))
        paths.append(str(path))
    (tmp_path / "truncated.jpg").write_bytes(jpeg_bytes(scene(9))[:300])
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), scene(10))
    items = [pipeline.ImageItem(i, p) for i, p in enumerate(
        [*paths, str(tmp_path / "truncated.jpg"), str(tmp_path / "gone.jpg"), str(png)])]
    batches = list(pipeline.pipeline_run(items, tiny_scorer, batch_size=4, num_workers=2))
    scored = [s for batch in batches for s in batch]
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(s.key for s in scored) == list(range(10))
    by_key = {s.key: s for s in scored}
    assert by_key[8].error.startswith("file missing") and by_key[8].embedding is None
    assert "cannot decode" in by_key[7].error
    assert all(not by_key[k].error and by_key[k].embedding.shape == (64,) for k in [*range(7), 9])


def test_engine_imports_no_django():
    for path in ENGINE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in {"django", "rest_framework"} or ".models" in n for n in names), path
    code = ("import sys; sys.path.insert(0, 'platform'); "
            "from aesplatform.curation.engine import clip, pipeline, dedup, proposals; "
            "import django.conf; assert not django.conf.settings.configured; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ENGINE.parents[3], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]
