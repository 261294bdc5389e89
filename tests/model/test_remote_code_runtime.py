"""A released HumanAesExpert checkpoint (remote code), through a stand-in of it (tests/support): the runtime check
names what is missing before anything loads, and in the pinned runtime (`make humanaesexpert-runtime`) the scorer
and `python -m model_core score --remote-code` score as the reference does (12 tiles + thumbnail, run_metavoter,
expert_score), giving nothing for the heads the remote code does not expose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_core.data import image_to_pixels, load_image
from model_core.model import ModelLoadError
from model_core.scoring import REMOTE_CODE_RUNTIME_TARGET, REMOTE_CODE_TRANSFORMERS, RemoteCodeScorer
from tests.support.humanaesexpert_standin import standin_outputs, write_standin_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def standin(tmp_path):
    return write_standin_checkpoint(tmp_path / "HumanAesExpert-standin")


@pytest.fixture
def images(tmp_path):
    """Three tiny images of different shapes (so that each tiles differently at 12 tiles)."""
    paths = []
    for i, size in enumerate([(64, 48), (40, 80), (32, 32)]):
        path = tmp_path / f"img{i}.png"
        array = (np.random.default_rng(i).random((size[1], size[0], 3)) * 255).astype("uint8")
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def _hide(monkeypatch, *names: str) -> None:
    for name in names:  # None in sys.modules makes `import name` fail, whatever is installed
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_einops_is_named_with_the_make_target_before_loading(monkeypatch, standin):
    _hide(monkeypatch, "einops")
    with pytest.raises(ModelLoadError) as info:
        RemoteCodeScorer(standin, device="cpu")
    message = str(info.value)
    assert "einops" in message and REMOTE_CODE_RUNTIME_TARGET in message and "download" not in message


def test_a_sentencepiece_tokenizer_needs_sentencepiece(monkeypatch, tmp_path):
    checkpoint = write_standin_checkpoint(tmp_path / "eight-b-like", sentencepiece=True)
    monkeypatch.setitem(sys.modules, "einops", types.ModuleType("einops"))
    _hide(monkeypatch, "sentencepiece")
    with pytest.raises(ModelLoadError, match="sentencepiece") as info:
        RemoteCodeScorer(checkpoint, device="cpu")
    assert "einops" not in str(info.value)


def test_another_transformers_version_is_refused_naming_the_pin_and_the_target(monkeypatch, standin):
    import transformers

    for name in ("einops", "timm"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(transformers, "__version__", "4.57.6")
    with pytest.raises(ModelLoadError) as info:
        RemoteCodeScorer(standin, device="cpu")
    message = str(info.value)
    assert REMOTE_CODE_TRANSFORMERS in message and "4.57.6" in message and REMOTE_CODE_RUNTIME_TARGET in message


def test_a_directory_without_the_checkpoint_says_to_download_it(tmp_path):
    with pytest.raises(ModelLoadError, match="download"):
        RemoteCodeScorer(tmp_path / "nothing-here", device="cpu")


def test_the_lock_file_pins_what_the_scorer_requires():
    lock = (REPO / "requirements-humanaesexpert.lock").read_text().splitlines()
    pins = dict(line.split("==") for line in lock if line and not line.startswith("#"))
    assert pins["transformers"] == REMOTE_CODE_TRANSFORMERS
    assert {"tokenizers", "einops", "timm", "sentencepiece"} <= set(pins)


def test_what_remote_code_returns_becomes_plain_floats():
    import torch

    from model_core.scoring import _floats

    assert _floats(torch.tensor([[0.5, 0.25]], dtype=torch.float16)) == [0.5, 0.25]
    assert _floats([torch.tensor(0.5), 0.25, np.float32(0.125)]) == [0.5, 0.25, 0.125]
    assert _floats(0.75) == [0.75] and _floats(np.array([1.0, 0.0])) == [1.0, 0.0]


def _score_cli(runtime_path: list[str], checkpoint: Path, images: list[Path], tmp_path: Path, *extra: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*runtime_path, str(REPO)]), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "model_core", "score", "--remote-code", "--device", "cpu",
                           str(checkpoint), *map(str, images), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_score_remote_code_in_the_pinned_runtime_scores_as_the_reference(humanaesexpert_runtime, standin, images,
                                                                         tmp_path):
    result = _score_cli([str(humanaesexpert_runtime)], standin, [*images, tmp_path / "missing.png"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and rows[-1]["error"] and rows[-1]["metavoter_score"] is None
    for path, row in zip(images, rows):
        # the reference's input: load_image(max_num=12), i.e. our tiling at 12 tiles + thumbnail
        pixels = image_to_pixels(load_image(path), max_tiles=12, tile_size=448)
        expected = standin_outputs(standin, pixels)
        assert row["metavoter_score"] == pytest.approx(expected["metavoter"], abs=1e-6)
        assert row["expert_scores"] == pytest.approx(expected["expert"], abs=1e-6)
        assert row["lm_score"] is None and row["regression_score"] is None and row["uncertainty"] is None
        assert row["error"] is None
    one_tile = standin_outputs(standin, image_to_pixels(load_image(images[0]), max_tiles=1, tile_size=448))
    assert abs(one_tile["metavoter"] - rows[0]["metavoter_score"]) > 1e-4  # the tile count shows in the output


@pytest.mark.slow
def test_score_remote_code_with_einops_unavailable_names_einops(humanaesexpert_runtime, standin, images, tmp_path):
    blocker = tmp_path / "no-einops"
    blocker.mkdir()
    (blocker / "einops.py").write_text("raise ImportError('einops is not installed here')\n")
    result = _score_cli([str(blocker), str(humanaesexpert_runtime)], standin, images[:1], tmp_path)
    assert result.returncode == 2
    error = json.loads(result.stdout)
    assert error["error"] == "ModelLoadError"
    assert "einops" in error["message"] and REMOTE_CODE_RUNTIME_TARGET in error["message"]
