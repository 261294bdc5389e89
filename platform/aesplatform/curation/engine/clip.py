"""open_clip models chosen by name + a local checkpoint path; zero-shot probabilities and embeddings.

Weights never come from the network: `checkpoint` is a local file (safetensors or a torch state dict) given
to open_clip as `pretrained=<path>`; an empty checkpoint means random initialisation (tests, benchmarks).
`AESP-Tiny-CLIP` is a tiny architecture registered from model_configs/ for tests and CPU runs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from .prompts import prompt_list

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-L-14"
TINY_MODEL = "AESP-Tiny-CLIP"
_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
if TINY_MODEL not in open_clip.list_models():
    open_clip.add_model_config(_CONFIG_DIR)
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


class CheckpointError(ValueError):
    """The model name is unknown, or the checkpoint is missing, unreadable or for another architecture."""


def model_names() -> list[str]:
    return sorted(open_clip.list_models())


def _model_config_name(model_name: str) -> str:
    if not model_name or model_name not in open_clip.list_models():
        raise CheckpointError(
            f"Unknown CLIP model {model_name!r}; open_clip knows e.g. {DEFAULT_MODEL}, ViT-B-32, {TINY_MODEL}."
        )
    config = open_clip.get_model_config(model_name) or {}
    if "hf_tokenizer_name" in config.get("text_cfg", {}) or "hf_model_name" in config.get("text_cfg", {}):
        raise CheckpointError(
            f"CLIP model {model_name!r} needs a Hugging Face tokenizer download; pick an open_clip-native one."
        )
    return model_name


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        else:
            state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise CheckpointError(f"Checkpoint {path} holds no state dict.")
            shapes = {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same clear error
        raise CheckpointError(f"Checkpoint {path} cannot be read as safetensors or a torch state dict: {exc}") from exc
    if shapes and all(key.startswith("module.") for key in shapes):
        shapes = {key[len("module."):]: shape for key, shape in shapes.items()}
    return shapes


def checkpoint_check(model_name: str, checkpoint: str) -> None:
    """Refuse an unknown model, a checkpoint that does not exist, or one whose tensors do not fit the model.

    Cheap: the model is built on the meta device and the checkpoint read lazily (safetensors header or mmap).
    """
    _model_config_name(model_name)
    if not checkpoint:
        return
    path = Path(checkpoint)
    if not path.is_absolute():
        raise CheckpointError(f"The checkpoint path must be absolute, not {checkpoint!r}.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {checkpoint} does not exist.")
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"Checkpoint {checkpoint} must be one of {', '.join(CHECKPOINT_SUFFIXES)}.")
    shapes = _checkpoint_shapes(path)
    with torch.device("meta"):
        expected = {
            k: tuple(v.shape) for k, v in open_clip.create_model(model_name, device="meta").state_dict().items()
        }
    missing = sorted(set(expected) - set(shapes))
    mismatched = sorted(
        k for k in set(expected) & set(shapes)
        if expected[k] != shapes[k] and "positional_embedding" not in k  # open_clip resizes those
    )
    if missing or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} tensor(s) missing (e.g. {missing[0]})")
        if mismatched:
            k = mismatched[0]
            details.append(f"{len(mismatched)} of another shape "
                           f"(e.g. {k}: {list(shapes[k])} here, {list(expected[k])} in {model_name})")
        raise CheckpointError(
            f"Checkpoint {checkpoint} does not match CLIP model {model_name}: " + "; ".join(details) + "."
        )


@dataclass
class ClipOutput:
    embeddings: np.ndarray  # (n, d) float32, L2-normalised
    probabilities: list[dict[str, float]]  # per image: prompt group -> probability


def _prompts_key(prompt_set: dict[str, Any]) -> str:
    return json.dumps(prompt_set, sort_keys=True)


class ClipScorer:
    """A loaded CLIP model with the prompt set's text features computed once. bf16 on CUDA, fp32 on CPU."""

    def __init__(
        self, *, model_name: str, checkpoint: str, prompt_set: dict[str, Any], device: str | torch.device = "cpu"
    ):
        checkpoint_check(model_name, checkpoint)
        self.device = torch.device(device)
        self.model_name = model_name
        self.checkpoint = checkpoint
        precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        try:
            # without a checkpoint, the same (seeded) random weights in every worker: a run several workers share
            # is scored by one model, and a resumed run by the model that began it
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = open_clip.create_model(
                    model_name, pretrained=checkpoint or None, precision=precision, device=self.device
                )
        except Exception as exc:  # noqa: BLE001 - open_clip raises AssertionError/RuntimeError for bad weights
            raise CheckpointError(
                f"open_clip could not load {model_name} from {checkpoint or 'random init'}: {exc}"
            ) from exc
        model.eval()
        self.model = model
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.mean = (
            torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=self.device).view(1, 3, 1, 1) * 255
        )
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=self.device).view(1, 3, 1, 1) * 255
        self.set_prompts(prompt_set)

    @property
    def description(self) -> str:
        return (f"{self.model_name} ({'random init' if not self.checkpoint else os.path.basename(self.checkpoint)}, "
                f"{self.dtype}, {self.device})")

    def use_prompts(self, prompt_set: dict[str, Any]) -> None:
        """Score against `prompt_set` from now on (its text features are computed again only when it changed)."""
        if _prompts_key(prompt_set) != self.prompts_key:
            self.set_prompts(prompt_set)

    @torch.inference_mode()
    def set_prompts(self, prompt_set: dict[str, Any]) -> None:
        self.prompts_key = _prompts_key(prompt_set)  # the prompt set the text features were computed from
        prompts, self.groups = prompt_list(prompt_set)
        tokens = open_clip.get_tokenizer(self.model_name)(prompts).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            text = self.model.encode_text(tokens, normalize=True)
        self.text_features = text.float()
        self.logit_scale = float(self.model.logit_scale.exp().clamp(max=100).item())

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> ClipOutput:
        """`images`: uint8 (n, 3, S, S) already resized and cropped to image_size, on any device."""
        x = images.to(self.device, non_blocking=True).float()
        x = ((x - self.mean) / self.std).to(self.dtype)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            features = self.model.encode_image(x, normalize=True)
        features = torch.nn.functional.normalize(features.float(), dim=-1)
        logits = self.logit_scale * features @ self.text_features.T
        probabilities: list[dict[str, float]] = [{} for _ in range(features.shape[0])]
        for group, (positive, negative) in self.groups.items():
            group_probs = logits[:, positive + negative].softmax(dim=-1)[:, : len(positive)].sum(dim=-1).cpu().tolist()
            for i, p in enumerate(group_probs):
                probabilities[i][group] = round(float(p), 6)
        return ClipOutput(features.cpu().numpy(), probabilities)
