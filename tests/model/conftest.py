"""Shared fixtures for model_core tests: a tiny seeded model and small synthetic data sets (no network, no DB)."""

from __future__ import annotations

import pytest
import torch

from model_core.model import ModelConfig, build_model
from model_core.synthetic import write_humanbeauty


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig(train_vision=True, head_dropout=0.0)


@pytest.fixture()
def tiny_model(tiny_config):
    return build_model(tiny_config, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """24 synthetic images (12 of each kind), 128x64 so that tiling yields 2 tiles + thumbnail at max_tiles > 1."""
    root = tmp_path_factory.mktemp("synth")
    write_humanbeauty(root, n_overall=12, n_expert=12, seed=3, size=(128, 64), test_fraction=0.25)
    return root
