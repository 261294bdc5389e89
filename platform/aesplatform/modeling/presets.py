"""Training presets: named, validated starting points for model_core's TrainConfig.

A job stores the fully resolved TrainConfig (minus its paths) so that what ran is on record; a preset only
supplies defaults. `tiny-cpu` trains the random-init test model (a demo on a laptop CPU); the LoRA presets train
a real InternVL backbone found at a local path (`backbone_path`), which must exist when the job is created.

`init_model_version` (the id of a registered model_core ModelVersion) starts a job from that model instead: its
checkpoint becomes the trainer's `init_checkpoint` and its model config (backbone, LoRA, head kind) is the job's,
so that a checkpoint made by `python -m model_core convert` from InternVL2 / HumanAesExpert weights trains with
any preset whose backbone kind matches (tiny-cpu: a tiny model; the LoRA presets: a real backbone).

The training recipe (chat layout and prompts, docs/training-recipes.md) is model_core's default for what the job
starts from: ours ("platform") for the tiny backbone, the reference trainer's ("reference") for InternVL2
weights; a job may choose with the `recipe` override.

`processes` (default 1, at most AESP_TRAINING_MAX_PROCESSES) trains data-parallel in that many processes on the
worker (torchrun; one per GPU, or CPU processes with gloo). `batch_size` stays the batch of the whole run (each
process takes batch_size / processes records of it), so it must divide; steps and schedule are those of one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from aesplatform.common.exceptions import ServiceError
from aesplatform.common.text import name_list

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
    "metavoter_folds": (int,),
    "backbone_path": (str,), "device": (str,), "precision": (str,), "num_workers": (int,), "recipe": (str,),
    "init_model_version": (int,), "processes": (int,),
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
        raise ServiceError(f"Unknown config key(s): {name_list(unknown)}. Allowed: {', '.join(sorted(OVERRIDES))}.",
                           code="unknown_config_key")
    for key, value in overrides.items():
        if value is None and key == "max_steps":
            continue
        if isinstance(value, bool) or not isinstance(value, OVERRIDES[key]):
            raise ServiceError(f"config.{key} must be {' or '.join(t.__name__ for t in OVERRIDES[key])}, "
                               f"got {value!r}.", code="invalid_config")
    spec = PRESETS[preset]
    processes = overrides.pop("processes", 1)
    backbone_path = overrides.pop("backbone_path", "") or ""
    init_version = overrides.pop("init_model_version", None)
    if init_version is not None:
        if backbone_path:
            raise ServiceError("Give either config.backbone_path or config.init_model_version, not both: a model "
                               "version brings its own backbone.", code="invalid_config")
        resolved = _resolve_from_model_version(preset, spec, init_version, overrides)
        return {**resolved, "processes": _check_processes(processes, resolved["train"])}
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
    return {"preset": preset, "train": train, "model": model, "backbone_path": backbone_path,
            "processes": _check_processes(processes, train)}


def _check_processes(processes: int, train: dict[str, Any]) -> int:
    limit = settings.AESP_TRAINING_MAX_PROCESSES
    if not 1 <= processes <= limit:
        raise ServiceError(f"config.processes must be between 1 and {limit} (AESP_TRAINING_MAX_PROCESSES), got "
                           f"{processes}.", code="invalid_config")
    if train["batch_size"] % processes:
        raise ServiceError(f"config.batch_size {train['batch_size']} cannot be shared out evenly across {processes} "
                           f"processes (each takes batch_size / processes records of every batch): choose a multiple "
                           f"of {processes}.", code="invalid_config")
    return processes


def _resolve_from_model_version(preset: str, spec: dict, version_id: int, overrides: dict) -> dict[str, Any]:
    """The job config of a run that starts from a registered model_core ModelVersion (see the module doc)."""
    from aesplatform.modeling.models import ModelBackend, ModelVersion
    from model_core.model import ModelConfig, ModelLoadError, read_checkpoint_config
    from model_core.training import TrainConfig

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise ServiceError(f"config.init_model_version: no model version with id {version_id}.",
                           code="unknown_model_version")
    if version.backend != ModelBackend.MODEL_CORE:
        raise ServiceError(f"Model version {version.name} is a {version.backend} checkpoint, which model_core cannot "
                           "train; convert it first (python -m model_core convert SOURCE OUT) and register OUT.",
                           code="invalid_config")
    from .checkpoints import checkpoint_dir

    checkpoint = checkpoint_dir(version)  # on an object store: this host's cached copy
    try:
        model = ModelConfig.from_dict(read_checkpoint_config(checkpoint)["model"])
    except (ModelLoadError, KeyError, TypeError, ValueError) as exc:
        raise ServiceError(f"Model version {version.name}: its checkpoint cannot be read ({exc}).",
                           code="checkpoint_missing") from None
    if model.backbone.is_tiny == spec["needs_backbone"]:
        raise ServiceError(
            f"Model version {version.name} has a {'tiny random-init' if model.backbone.is_tiny else 'real'} backbone;"
            f" preset {preset} trains {'a real backbone' if spec['needs_backbone'] else 'the tiny one'}. Choose a "
            f"{'tiny-cpu' if model.backbone.is_tiny else 'LoRA'} preset.", code="invalid_config")
    source = Path(model.backbone.source)
    if not model.backbone.is_tiny and not (source.is_absolute() and (source / "config.json").is_file()):
        raise ServiceError(f"Model version {version.name}: its backbone {model.backbone.source!r} is not a local "
                           "model directory on this machine.", code="backbone_missing")
    recipe = overrides.pop("recipe", None)
    if recipe is not None and recipe != model.chat.recipe:
        raise ServiceError(f"Model version {version.name} was trained with the {model.chat.recipe!r} recipe; a model "
                           "keeps the layout it was trained with (leave config.recipe out).", code="invalid_config")
    # (a stored checkpoint: the training worker swaps in its own cached copy, checkpoints.config_localized)
    train = {**spec["train"], **overrides, "init_checkpoint": checkpoint}
    try:
        TrainConfig.from_dict({**train, "data": "-", "output_dir": "-", "model": model.to_dict()}).validate()
    except (TypeError, ValueError) as exc:
        raise ServiceError(str(exc), code="invalid_config") from None
    return {"preset": preset, "train": train, "model": model.to_dict(),
            "backbone_path": "" if model.backbone.is_tiny else model.backbone.source,
            "init_model_version": version.pk}


def train_config(config: dict[str, Any], *, data: str, output_dir: str):
    from model_core.training import TrainConfig

    return TrainConfig.from_dict({**config["train"], "data": data, "output_dir": output_dir,
                                  "model": config["model"]})
