"""Training presets: named, validated starting points for model_core's TrainConfig.

A job stores the fully resolved TrainConfig (minus its paths) so that what ran is on record; a preset only
supplies defaults. `tiny-cpu` trains the random-init test model (a demo on a laptop CPU); the LoRA presets train
a real InternVL backbone found at a local path (`backbone_path`), which must exist when the job is created.
The training recipe (chat layout and prompts, docs/training-recipes.md) is model_core's default for what the job
starts from: ours ("platform") for the tiny backbone, the reference trainer's ("reference") for InternVL2
weights; a job may choose with the `recipe` override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aesplatform.common.exceptions import ServiceError

PRESETS: dict[str, dict[str, Any]] = {
    "tiny-cpu": {
        "needs_backbone": False,
        "description": "Random-init tiny InternVL on CPU, fp32: a demo that learns synthetic data in minutes.",
        "model": {"train_vision": True, "head_dropout": 0.0},
        "train": {"max_tiles": 1, "epochs": 7.0, "batch_size": 16, "lr": 5e-4, "head_lr": 2e-3, "warmup_steps": 10,
                  "num_workers": 0, "checkpoint_every": 10, "log_every": 5, "device": "cpu", "precision": "fp32",
                  "metavoter_fraction": 0.1, "seed": 0},
    },
    "1B-LoRA": {
        "needs_backbone": True,
        "description": "InternVL2-1B (local -hf directory), LoRA r16 + heads, bf16 on a GPU.",
        "model": {"train_vision": False, "head_dropout": 0.1},
        "train": {"max_tiles": 6, "epochs": 1.0, "batch_size": 4, "grad_accum": 4, "lr": 1e-4, "head_lr": 1e-3,
                  "warmup_steps": 50, "num_workers": 4, "checkpoint_every": 200, "log_every": 10, "device": "auto",
                  "precision": "auto", "gradient_checkpointing": True, "metavoter_fraction": 0.1, "seed": 0},
    },
    "8B-LoRA": {
        "needs_backbone": True,
        "description": "InternVL2-8B (local -hf directory), LoRA r16 + heads, bf16, gradient checkpointing.",
        "model": {"train_vision": False, "head_dropout": 0.1},
        "train": {"max_tiles": 6, "epochs": 1.0, "batch_size": 1, "grad_accum": 16, "lr": 5e-5, "head_lr": 1e-3,
                  "warmup_steps": 50, "num_workers": 4, "checkpoint_every": 100, "log_every": 10, "device": "auto",
                  "precision": "auto", "gradient_checkpointing": True, "metavoter_fraction": 0.1, "seed": 0},
    },
}

# What a request may override, with the type each must have.
OVERRIDES: dict[str, tuple[type, ...]] = {
    "epochs": (int, float), "max_steps": (int,), "batch_size": (int,), "grad_accum": (int,), "lr": (int, float),
    "head_lr": (int, float), "warmup_steps": (int,), "seed": (int,), "checkpoint_every": (int,),
    "log_every": (int,), "max_tiles": (int,), "metavoter_fraction": (int, float), "metavoter_steps": (int,),
    "backbone_path": (str,), "device": (str,), "precision": (str,), "num_workers": (int,), "recipe": (str,),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_config(*, preset: str, overrides: dict | None) -> dict[str, Any]:
    """The stored job config: {"train": {...TrainConfig fields but paths}, "model": {...}, "backbone_path": ...}.

    Raises ServiceError (400) naming the problem: unknown preset, unknown or mistyped override, a missing backbone
    directory, or values TrainConfig.validate() refuses."""
    from model_core.model import ModelConfig
    from model_core.text import default_recipe_for
    from model_core.training import TrainConfig

    if preset not in PRESETS:
        raise ServiceError(f"Unknown preset {preset!r}; expected one of {', '.join(PRESETS)}.", code="unknown_preset")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ServiceError(f"Unknown config key(s): {', '.join(unknown)}. Allowed: {', '.join(sorted(OVERRIDES))}.",
                           code="unknown_config_key")
    for key, value in overrides.items():
        if value is None and key == "max_steps":
            continue
        if isinstance(value, bool) or not isinstance(value, OVERRIDES[key]):
            raise ServiceError(f"config.{key} must be {' or '.join(t.__name__ for t in OVERRIDES[key])}, "
                               f"got {value!r}.", code="invalid_config")
    spec = PRESETS[preset]
    backbone_path = overrides.pop("backbone_path", "") or ""
    if spec["needs_backbone"]:
        if not backbone_path:
            raise ServiceError(f"Preset {preset} trains a real backbone: set config.backbone_path to a local InternVL "
                               "directory.", code="backbone_missing")
        path = Path(backbone_path)
        if not path.is_absolute() or not path.is_dir() or not (path / "config.json").is_file():
            raise ServiceError(f"Backbone path {backbone_path!r} is not a local model directory (absolute, with a "
                               "config.json).", code="backbone_missing")
    elif backbone_path:
        raise ServiceError(f"Preset {preset} uses the tiny random-init backbone; backbone_path does not apply.",
                           code="invalid_config")
    recipe = overrides.pop("recipe", None) or default_recipe_for("internvl-hf" if backbone_path else "tiny")
    try:
        model = ModelConfig.from_dict({**spec["model"], "backbone": {"source": backbone_path or "tiny"},
                                       "chat": {"recipe": recipe}}).to_dict()
    except ValueError as exc:
        raise ServiceError(str(exc), code="invalid_config") from None
    train = {**spec["train"], **overrides}
    try:
        TrainConfig.from_dict({**train, "data": "-", "output_dir": "-", "model": model}).validate()
    except (TypeError, ValueError) as exc:
        raise ServiceError(str(exc), code="invalid_config") from None
    return {"preset": preset, "train": train, "model": model, "backbone_path": backbone_path}


def train_config(config: dict[str, Any], *, data: str, output_dir: str):
    from model_core.training import TrainConfig

    return TrainConfig.from_dict({**config["train"], "data": data, "output_dir": output_dir,
                                  "model": config["model"]})
