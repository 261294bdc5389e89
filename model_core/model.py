"""The HumanAesExpert-style model: an InternVL backbone, three heads on ONE prefill, and the MetaVoter.

``build_model(config)`` is the only factory. The backbone is ``transformers.InternVLForConditionalGeneration``,
either loaded from a local directory / the Hugging Face cache (never downloaded: ``local_files_only``) or, for
tests and CPU runs, a tiny random-init configuration with a word-level tokenizer built offline.

One forward pass over ``prompt + "The aesthetics of the human image is"`` gives, at the last prefix token:

* LM head: the backbone's own ``lm_head`` restricted to the five level words -> a distribution over levels ->
  expected score (sum of p(level) x band centre) and its spread (standard deviation);
* Regression head: MLP on the hidden state -> overall score;
* Expert head: MLP on the hidden state -> the 12 scores (the overall last);
* MetaVoter: a gated convex combination of the three overall estimates, the gate driven by the LM spread and
  the heads' disagreement, plus an affine calibration; fitted after the heads on held-out data.

The reference implementation runs the MetaVoter as two passes (overall prompt, then expert prompt); here every
output comes from the same hidden state, so the MetaVoter costs nothing extra.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model_core.standard import LEVEL_CENTRES, NUM_DIMENSIONS, NUM_LEVELS, OVERALL_PROMPTS
from model_core.text import IMG_CONTEXT, ChatFormat, PromptBuilder, build_tiny_tokenizer

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "humanaes-model"
CHECKPOINT_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


class ModelLoadError(RuntimeError):
    """A backbone or checkpoint that cannot be loaded (not on local disk, incomplete, unreadable)."""


class CheckpointMismatchError(ModelLoadError):
    """A checkpoint whose config (or weights) does not match the model it is loaded into."""


# ---------------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TinyBackboneConfig:
    """Sizes of the random-init backbone used by tests and CPU demos (a few hundred thousand parameters)."""

    tile_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate: int = 128
    vision_layer_scale: float = 1.0  # InternViT's default 0.1 makes a from-scratch tower nearly linear (slow to learn)
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    vocab_size: int | None = None  # None: the tokenizer's size (set it to mimic a real model's lm_head cost)
    seed: int = 0

    @classmethod
    def internvl2_1b(cls) -> "TinyBackboneConfig":
        """InternVL2-1B's shapes (InternViT-300M-448px + Qwen2-0.5B), random weights: for benchmarks."""
        return cls(tile_size=448, patch_size=14, vision_hidden=1024, vision_layers=24, vision_heads=16,
                   vision_intermediate=4096, vision_layer_scale=0.1, text_hidden=896, text_layers=24, text_heads=14,
                   text_kv_heads=2, text_intermediate=4864, vocab_size=151655)


@dataclass
class BackboneConfig:
    """``source``: "tiny" (random init), a local directory, or a Hugging Face repo id already in the local cache."""

    source: str = "tiny"
    tiny: TinyBackboneConfig = field(default_factory=TinyBackboneConfig)
    revision: str | None = None
    attn_implementation: str = "sdpa"

    @property
    def is_tiny(self) -> bool:
        return self.source == "tiny"


@dataclass
class LoraSpec:
    """LoRA on the language model only (the vision tower and the projector are governed by the train_* flags)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class ModelConfig:
    """Everything that determines the model's structure; saved next to every checkpoint."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    lora: LoraSpec | None = field(default_factory=LoraSpec)
    head_hidden: int = 256
    head_dropout: float = 0.1
    # "mlp": our ScoreMLP heads (sigmoid outputs). "linear" / "linear_sigmoid": one Linear per head, the shape of
    # HumanAesExpert's released lm_regression_head / expert_head, so converted weights carry over unchanged; the
    # suffix says whether a sigmoid follows (the reference's own output transform, see model_core/convert.py).
    head_kind: str = "mlp"
    train_vision: bool = False  # fully train the vision tower (tiny random-init runs need it; real runs do not)
    train_projector: bool = True  # fully train the vision->language MLP projector
    chat: ChatFormat = field(default_factory=ChatFormat)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data, "model")


def _from_dict(cls: type, data: Any, where: str) -> Any:
    """Build nested dataclasses from plain dicts; unknown keys are an error that names them."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
    hints = _type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        sub = _dataclass_in(hint)
        if sub is not None and value is not None:
            kwargs[name] = _from_dict(sub, value, f"{where}.{name}")
        elif isinstance(value, list) and "tuple" in str(hint):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _dataclass_in(hint: Any) -> type | None:
    import typing

    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two config dicts differ (for a readable mismatch error)."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, prefix=f"{path}.")
        elif (list(va) if isinstance(va, tuple) else va) != (list(vb) if isinstance(vb, tuple) else vb):
            out.append(f"{path}: {va!r} != {vb!r}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------------------------


class ScoreMLP(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear -> sigmoid: scores in (0, 1)."""

    def __init__(self, hidden_size: int, inner: int, outputs: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.fc1 = nn.Linear(hidden_size, inner)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(inner, outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, outputs)
        return torch.sigmoid(self.fc2(self.drop(F.gelu(self.fc1(self.norm(hidden))))))


class ScoreLinear(nn.Module):
    """One Linear on the hidden state (HumanAesExpert's head shape), optionally followed by a sigmoid."""

    def __init__(self, hidden_size: int, outputs: int, *, squash: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, outputs)
        self.squash = squash

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, outputs)
        out = self.proj(hidden)
        return torch.sigmoid(out) if self.squash else out


HEAD_KINDS = ("mlp", "linear", "linear_sigmoid")


def build_score_head(config: "ModelConfig", hidden_size: int, outputs: int) -> nn.Module:
    if config.head_kind == "mlp":
        return ScoreMLP(hidden_size, config.head_hidden, outputs, config.head_dropout)
    if config.head_kind in ("linear", "linear_sigmoid"):
        return ScoreLinear(hidden_size, outputs, squash=config.head_kind == "linear_sigmoid")
    raise ValueError(f"model.head_kind must be one of {', '.join(HEAD_KINDS)}, got {config.head_kind!r}")


class MetaVoter(nn.Module):
    """Gated convex combination of the three overall estimates + affine calibration.

    The gate sees how unsure the LM head is (its spread) and how much the heads disagree, so it can lean on the
    regression/expert heads when the level distribution is flat. Zero-initialised gate = plain mean, which is
    what an unfitted MetaVoter returns (``fitted`` says whether :func:`fit_metavoter` ran).
    """

    N_FEATURES = 4
    FEATURE_SCALE = 5.0  # spreads and differences are ~0.1; scale them so the gate's weights stay O(1)

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(self.N_FEATURES, 3)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.scale = nn.Parameter(torch.ones(1))
        self.shift = nn.Parameter(torch.zeros(1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @staticmethod
    def features(estimates: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        # estimates (B, 3) = [lm, regression, expert overall]; spread (B,) -> (B, 4)
        lm, reg, exp = estimates.unbind(-1)
        return torch.stack([spread, (lm - reg).abs(), (lm - exp).abs(), (reg - exp).abs()], dim=-1)

    def forward(self, estimates: torch.Tensor, spread: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score (B,), weights (B, 3))."""
        weights = torch.softmax(self.gate(self.features(estimates, spread) * self.FEATURE_SCALE), dim=-1)
        combined = (weights * estimates).sum(-1)  # (B,)
        return (self.scale * combined + self.shift).clamp(0.0, 1.0), weights


def fit_metavoter(
    metavoter: MetaVoter, estimates: torch.Tensor, spread: torch.Tensor, target: torch.Tensor, *,
    steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-3,
) -> dict[str, float]:
    """Fit the MetaVoter by full-batch Adam on MSE. Inputs are detached head outputs on held-out records."""
    if estimates.ndim != 2 or estimates.shape[1] != 3 or estimates.shape[0] != target.shape[0]:
        raise ValueError(f"estimates must be (N, 3) matching target (N,), got {tuple(estimates.shape)} "
                         f"and {tuple(target.shape)}")
    if estimates.shape[0] < 4:
        raise ValueError(f"need at least 4 held-out records to fit the MetaVoter, got {estimates.shape[0]}")
    device = metavoter.scale.device
    estimates, spread, target = (t.detach().float().to(device) for t in (estimates, spread, target))
    with torch.no_grad():  # restart from the plain mean so refits are reproducible
        for p in (metavoter.gate.weight, metavoter.gate.bias, metavoter.shift):
            p.zero_()
        metavoter.scale.fill_(1.0)
    params = list(metavoter.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    before = F.mse_loss(estimates.mean(-1), target).item()
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            score, _ = metavoter(estimates, spread)
            # Shrink the gate (weights and bias) towards the plain mean: the heads are near-equal estimators and a
            # held-out set of a few dozen records cannot justify trusting one of them blindly.
            penalty = metavoter.gate.weight.square().sum() + metavoter.gate.bias.square().sum()
            loss = F.mse_loss(score, target) + weight_decay * penalty
            loss.backward()
            optimizer.step()
    for p in params:
        p.requires_grad_(False)
    with torch.no_grad():
        score, weights = metavoter(estimates, spread)
        metavoter.fitted.fill_(True)
    return {"mse_mean_of_heads": before, "mse_metavoter": F.mse_loss(score, target).item(),
            "mean_weight_lm": weights[:, 0].mean().item(), "mean_weight_regression": weights[:, 1].mean().item(),
            "mean_weight_expert": weights[:, 2].mean().item(), "n": int(target.shape[0])}


@dataclass
class HeadOutputs:
    """Everything one forward pass gives. Shapes: B images."""

    level_probs: torch.Tensor  # (B, 5) LM distribution over the level words
    lm_score: torch.Tensor  # (B,) expected score under level_probs
    lm_spread: torch.Tensor  # (B,) standard deviation of the score under level_probs
    regression: torch.Tensor  # (B,)
    expert: torch.Tensor  # (B, 12)
    metavoter: torch.Tensor  # (B,)
    metavoter_weights: torch.Tensor  # (B, 3) weights of [lm, regression, expert] in the MetaVoter
    lm_loss: torch.Tensor | None = None  # () answer-token cross-entropy, when labels were given

    @property
    def estimates(self) -> torch.Tensor:  # (B, 3) the three overall estimates
        return torch.stack([self.lm_score, self.regression, self.expert[:, -1]], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------


class HumanAesModel(nn.Module):
    """Backbone + heads. Build with :func:`build_model`; call :meth:`forward` with a :class:`~model_core.data.Batch`'s
    ``model_inputs()``."""

    def __init__(self, config: ModelConfig, backbone: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        hidden = backbone.config.text_config.hidden_size
        self.regression_head = build_score_head(config, hidden, 1)
        self.expert_head = build_score_head(config, hidden, NUM_DIMENSIONS)
        self.metavoter = MetaVoter()
        self.prompts = PromptBuilder(tokenizer, image_token_id=int(backbone.config.image_token_id), chat=config.chat)
        self.register_buffer("level_token_ids", torch.tensor(self.prompts.level_token_ids, dtype=torch.long),
                             persistent=False)
        self.register_buffer("level_centres", torch.tensor(LEVEL_CENTRES, dtype=torch.float32), persistent=False)

    # -- geometry -------------------------------------------------------------------------------------------
    @property
    def tile_size(self) -> int:
        size = self.backbone.config.vision_config.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def tokens_per_tile(self) -> int:
        vision = self.backbone.config.vision_config
        patch = vision.patch_size[0] if isinstance(vision.patch_size, (list, tuple)) else vision.patch_size
        side = self.tile_size // int(patch)
        return int(side * side * self.backbone.config.downsample_ratio ** 2)

    @property
    def device(self) -> torch.device:
        return self.metavoter.scale.device

    @property
    def backbone_dtype(self) -> torch.dtype:
        return self.backbone.get_input_embeddings().weight.dtype

    def collator(self, *, train: bool, seed: int = 0):
        """Batches for training (answers, labels, a prompt per record drawn from ``seed``) or for scoring."""
        from model_core.data import Collator

        prompts = self.prompts
        if seed != prompts.seed:
            prompts = copy.copy(prompts)
            prompts.seed = seed
        return Collator(prompts.encode, tokens_per_tile=self.tokens_per_tile,
                        pad_token_id=int(self.tokenizer.pad_token_id or 0), train=train)

    # -- forward --------------------------------------------------------------------------------------------
    def forward(
        self, *, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        head_index: torch.Tensor, lm_index: torch.Tensor | None = None, labels: torch.Tensor | None = None,
    ) -> HeadOutputs:
        """One prefill; the regression and expert heads read the hidden state at ``head_index``, the LM head at
        ``lm_index`` (the last answer-prefix token; defaults to ``head_index``, where the platform recipe reads all
        three). Where each recipe puts them: :mod:`model_core.text`."""
        low_precision = self.backbone_dtype in (torch.bfloat16, torch.float16)
        with torch.autocast(device_type=input_ids.device.type, dtype=self.backbone_dtype, enabled=low_precision):
            out = self.backbone.model(
                input_ids=input_ids, attention_mask=attention_mask,
                pixel_values=pixel_values.to(self.backbone_dtype), use_cache=False,
            )
        hidden = out.last_hidden_state  # (B, T, D)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        head_hidden = hidden[rows, head_index].float()  # (B, D)
        lm_hidden = head_hidden if lm_index is None else hidden[rows, lm_index].float()  # (B, D)

        lm_weight = self.backbone.lm_head.weight  # (V, D)
        level_logits = lm_hidden @ lm_weight[self.level_token_ids].float().T  # (B, 5)
        level_probs = torch.softmax(level_logits, dim=-1)
        lm_score = level_probs @ self.level_centres  # (B,)
        lm_spread = (level_probs @ self.level_centres.square() - lm_score.square()).clamp_min(0).sqrt()  # (B,)

        regression = self.regression_head(head_hidden).squeeze(-1)  # (B, 1) -> (B,)
        expert = self.expert_head(head_hidden)  # (B, 12)
        estimates = torch.stack([lm_score, regression, expert[:, -1]], dim=-1)  # (B, 3)
        metavoter, weights = self.metavoter(estimates, lm_spread)

        lm_loss = None
        if labels is not None:
            # Next-token CE on answer tokens only; the vocabulary projection runs on those positions alone.
            targets = labels[:, 1:]  # (B, T-1)
            mask = targets != -100
            selected = hidden[:, :-1][mask]  # (N, D)
            logits = self.backbone.lm_head(selected).float()  # (N, V)
            lm_loss = F.cross_entropy(logits, targets[mask]) if selected.shape[0] else hidden.sum() * 0.0
        return HeadOutputs(level_probs=level_probs, lm_score=lm_score, lm_spread=lm_spread, regression=regression,
                           expert=expert, metavoter=metavoter, metavoter_weights=weights, lm_loss=lm_loss)

    # -- parameters and checkpoints --------------------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.regression_head.parameters()) + list(self.expert_head.parameters())

    def set_trainable(self, *, heads: bool = True) -> None:
        """Freeze everything, then unfreeze LoRA, the configured backbone parts and (optionally) the heads."""
        for p in self.parameters():
            p.requires_grad_(False)
        for name, p in self.backbone.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        if self.config.train_projector:
            self.backbone.model.multi_modal_projector.requires_grad_(True)
        if self.config.train_vision:
            self.backbone.model.vision_tower.requires_grad_(True)
        if heads:
            for p in self.head_parameters():
                p.requires_grad_(True)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: everything for a random-init backbone; otherwise what differs from the base
        weights (LoRA, heads, MetaVoter, and the backbone parts that training changes)."""
        state = self.state_dict()
        if self.config.backbone.is_tiny:
            return state
        keep = ("regression_head.", "expert_head.", "metavoter.")
        trained = []
        if self.config.train_projector:
            trained.append("backbone.model.multi_modal_projector.")
        if self.config.train_vision:
            trained.append("backbone.model.vision_tower.")
        return {k: v for k, v in state.items() if k.startswith(keep) or "lora_" in k or k.startswith(tuple(trained))}

    def extra_repr(self) -> str:
        return (f"source={self.config.backbone.source!r}, tile_size={self.tile_size}, "
                f"tokens_per_tile={self.tokens_per_tile}")


# ---------------------------------------------------------------------------------------------------------------
# Factory, save, load
# ---------------------------------------------------------------------------------------------------------------


def _tiny_backbone(cfg: TinyBackboneConfig, tokenizer: Any, attn_implementation: str) -> nn.Module:
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    if cfg.tile_size % cfg.patch_size or (cfg.tile_size // cfg.patch_size) % 2:
        raise ValueError(f"tile_size/patch_size must be an even integer, got {cfg.tile_size}/{cfg.patch_size}")
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=cfg.vision_hidden, num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
            intermediate_size=cfg.vision_intermediate, image_size=[cfg.tile_size] * 2, patch_size=[cfg.patch_size] * 2,
            layer_scale_init_value=cfg.vision_layer_scale,
        ),
        text_config=dict(
            model_type="qwen2", vocab_size=cfg.vocab_size or len(tokenizer), hidden_size=cfg.text_hidden,
            num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
            num_key_value_heads=cfg.text_kv_heads, intermediate_size=cfg.text_intermediate,
            max_position_embeddings=4096, tie_word_embeddings=False, use_sliding_window=False,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(cfg.seed)
        backbone = InternVLForConditionalGeneration(config)
        # The default init (std 0.02) leaves a random, frozen lm_head unable to express a confident token at this
        # width (max logit ~1): the LM head could never learn its answers. Scale it like a trained head instead.
        nn.init.normal_(backbone.lm_head.weight, std=cfg.text_hidden ** -0.5)
        return backbone


def _pretrained_backbone(cfg: BackboneConfig, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.source, revision=cfg.revision, local_files_only=True)
        backbone = InternVLForConditionalGeneration.from_pretrained(
            cfg.source, revision=cfg.revision, local_files_only=True, dtype=dtype,
            attn_implementation=cfg.attn_implementation,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load the backbone {cfg.source!r} from local disk (a directory, or the Hugging Face cache; "
            f"nothing is downloaded): {exc}. Download it once with `huggingface-cli download {cfg.source}` on a "
            "machine with network access, or point backbone.source at a local directory."
        ) from None
    return backbone, tokenizer


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} requested but CUDA is not available on this machine")
    return device


class PrecisionError(RuntimeError):
    """bf16 (or another dtype) requested on a device that cannot run it."""


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 on a GPU that supports it, else fp32. 'bf16' on a device without bf16 is an error."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16_ok:
        raise PrecisionError(
            f"bf16 was requested but device {device} has no bf16 support "
            f"({'CPU runs use fp32' if device.type == 'cpu' else 'this GPU predates Ampere'}); use precision='fp32' "
            "or 'auto'"
        )
    if precision == "fp32" or (precision == "auto" and not bf16_ok):
        return torch.float32
    return torch.bfloat16


def build_model(
    config: ModelConfig | None = None, *, device: str | torch.device | None = "cpu", precision: str = "fp32",
    tokenizer: Any = None,
) -> HumanAesModel:
    """The one factory: backbone (tiny or local pretrained) + LoRA (if configured) + heads, on ``device``.

    ``precision`` sets the backbone's weight dtype ('auto' | 'bf16' | 'fp32'); heads and LoRA stay fp32.
    ``tokenizer`` overrides the one that goes with the backbone (a checkpoint passes its saved tokenizer).
    """
    config = config or ModelConfig()
    if config.head_kind not in HEAD_KINDS:
        raise ValueError(f"model.head_kind must be one of {', '.join(HEAD_KINDS)}, got {config.head_kind!r}")
    device = resolve_device(device)
    dtype = resolve_dtype(precision, device)
    if config.backbone.is_tiny:
        tokenizer = tokenizer or build_tiny_tokenizer()
        backbone = _tiny_backbone(config.backbone.tiny, tokenizer, config.backbone.attn_implementation)
    else:
        backbone, loaded_tokenizer = _pretrained_backbone(config.backbone, dtype)
        tokenizer = tokenizer or loaded_tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.lora is not None:
        from peft import LoraConfig, inject_adapter_in_model

        lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=list(config.lora.target_modules), bias="none")
        inject_adapter_in_model(lora, backbone.model.language_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.backbone.tiny.seed + 1)
        model = HumanAesModel(config, backbone, tokenizer)
    model.to(device)
    if dtype != torch.float32:
        # Frozen base weights in bf16; everything that trains (LoRA, heads, trained parts) stays fp32.
        for name, p in model.backbone.named_parameters():
            if "lora_" not in name:
                p.data = p.data.to(dtype)
        if config.train_projector:
            model.backbone.model.multi_modal_projector.float()
        if config.train_vision:
            model.backbone.model.vision_tower.float()
    model.set_trainable(heads=True)
    model.eval()
    return model


def save_model(model: HumanAesModel, directory: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ the tokenizer) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.checkpoint_state().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": CHECKPOINT_FORMAT})
    model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": model.config.to_dict(),
        "weights": "full" if model.config.backbone.is_tiny else "delta",
        "n_tensors": len(state),
        "metavoter_fitted": bool(model.metavoter.fitted.item()),
        "metadata": metadata or {},
    }
    (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: not found; is {directory} a model checkpoint directory?")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: malformed JSON ({exc.msg})") from None
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (format={payload.get('format')!r})")
    if payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ModelLoadError(f"{path}: format_version {payload.get('format_version')} is not supported "
                             f"(this code reads {CHECKPOINT_FORMAT_VERSION})")
    return payload


def load_state(model: HumanAesModel, directory: str | Path) -> None:
    """Load a checkpoint's weights into ``model``; every saved tensor must fit and every expected one exist."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: not found")
    try:
        state = load_file(str(path), device=str(model.device))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from None
    expected = model.checkpoint_state()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise CheckpointMismatchError(f"{path}: weights do not match the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)


def load_model(
    directory: str | Path, *, device: str | torch.device | None = "cpu", precision: str = "fp32",
    expect_config: ModelConfig | None = None,
) -> HumanAesModel:
    """Rebuild the model a checkpoint was saved from and load its weights.

    ``expect_config``: raise :class:`CheckpointMismatchError` listing the differing fields if the checkpoint was
    made with another structure (e.g. resuming a run whose config changed).
    """
    directory = Path(directory)
    payload = read_checkpoint_config(directory)
    try:
        config = ModelConfig.from_dict(payload["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{directory / CONFIG_FILE}: invalid model config ({exc})") from None
    if expect_config is not None:
        diffs = config_differences(config.to_dict(), expect_config.to_dict())
        if diffs:
            raise CheckpointMismatchError(
                f"{directory / CONFIG_FILE}: checkpoint config does not match the requested one: " + "; ".join(diffs))
    tokenizer = None
    if (directory / TOKENIZER_DIR).is_dir():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR), local_files_only=True)
    model = build_model(config, device=device, precision=precision, tokenizer=tokenizer)
    load_state(model, directory)
    model.eval()
    return model


__all__ = [
    "BackboneConfig", "CheckpointMismatchError", "HEAD_KINDS", "ScoreLinear", "ScoreMLP", "HeadOutputs",
    "HumanAesModel", "LoraSpec", "MetaVoter",
    "ModelConfig", "ModelLoadError", "PrecisionError", "TinyBackboneConfig", "build_model", "fit_metavoter",
    "load_model", "load_state", "read_checkpoint_config", "resolve_device", "resolve_dtype", "save_model",
    "OVERALL_PROMPTS", "NUM_LEVELS",
]
