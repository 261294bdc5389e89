"""Convert an InternVL2-family checkpoint in its ORIGINAL remote-code layout into model_core's backbone.

``python -m model_core convert SOURCE OUT`` reads a checkpoint as OpenGVLab publishes InternVL2 (and as
KwaiVGI publishes HumanAesExpert-1B/8B): ``config.json`` of an ``InternVLChatConfig`` (``vision_config``,
``llm_config``, ``downsample_ratio``, ``select_layer``, ``ps_version``, ``template``, ...) and weights keyed
``vision_model.*`` (InternViT), ``mlp1.{0,1,3}.*`` (the projector) and ``language_model.*`` (Qwen2ForCausalLM
as in the 1B, InternLM2ForCausalLM as in the 8B). It writes::

    OUT/backbone/          an InternVLForConditionalGeneration ("-hf") directory + tokenizer, loadable offline
    OUT/config.json        a model_core checkpoint whose backbone.source is OUT/backbone (absolute path)
    OUT/model.safetensors  its delta: heads (carried or fresh), fresh LoRA, projector, MetaVoter (unfitted)
    OUT/tokenizer/
    OUT/conversion.json    what happened to every source tensor, and to the heads

so that ``train(TrainConfig(init_checkpoint=OUT, ...))`` and the platform's model registry accept ``OUT``.

Rules: every source tensor is either consumed (written into the backbone or a head) or named in the report as
dropped with a reason; a tensor no rule explains is an error, as is an expected tensor that is missing. Nothing is
written at ``OUT`` until everything succeeded (the work happens in a temporary sibling directory that is renamed
at the end).

Mapping notes (checked against InternVL2's modeling code and transformers 4.57's InternVL):

* InternViT ``attn.qkv`` is one Linear whose output rows are [q; k; v] (each ``hidden`` rows); ``ls1``/``ls2``
  are the layer scales (``lambda_1``/``lambda_2``); ``norm1``/``norm2`` the pre-attention / pre-MLP norms.
  InternViT has no final norm: the -hf tower is written with ``use_mean_pooling`` (an Identity there).
* ``select_layer``: the original reads ``hidden_states[select_layer]`` of the tower (entry k = output after k
  layers). transformers 4.57 only handles ``vision_feature_layer == -1`` (any other value reaches a missing
  attribute), so the tower is cut after the selected layer and written with ``vision_feature_layer = -1``; the
  layers after it are dropped (the original never uses them).
* Pixel shuffle: transformers implements the original's ``ps_version`` "v2" exactly; "v1" is refused.
* InternLM2 ``attention.wqkv``: output rows grouped per key/value head as
  ``(kv_heads, groups + 2, head_dim)``: the first ``groups`` slots are that kv head's query heads, then its key,
  then its value; split into Llama's q/k/v projections (query head ``h*groups + g`` uses kv head ``h``, which is
  Llama's grouped-query order). ``feed_forward.w1/w3/w2`` are gate/up/down.
* HumanAesExpert's ``language_model.lm_regression_head`` (Linear D->1) and ``language_model.expert_head``
  (Linear D->12) carry into a ``head_kind="linear"`` model when their shapes fit; otherwise they are dropped and
  our heads start fresh, with the reason in the report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model_core.standard import NUM_DIMENSIONS
from model_core.text import IM_END, IM_START, IMG_CONTEXT, IMG_END, IMG_START, ChatFormat, default_recipe_for

logger = logging.getLogger(__name__)

REPORT_FILE = "conversion.json"
BACKBONE_DIR = "backbone"
SUPPORTED_LLMS = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model")
REQUIRED_TOKENS = (IMG_CONTEXT, IMG_START, IMG_END, IM_START, IM_END)
HEAD_SIDE_FILES = {"regression": "regression_head.pth", "expert": "expert_head.pth"}
HEAD_SOURCE_PREFIX = {"regression": "language_model.lm_regression_head.", "expert": "language_model.expert_head."}
HEAD_OUTPUTS = {"regression": 1, "expert": NUM_DIMENSIONS}


class ConversionError(ValueError):
    """A source that cannot be converted faithfully (unknown layout, missing or unexplained tensors, ...)."""


@dataclass
class ConversionReport:
    source: str
    output: str
    layout: str = "internvl_chat (original remote-code InternVL2 layout)"
    llm_family: str = ""
    vision: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    n_source_tensors: int = 0
    consumed: dict[str, list[str]] = field(default_factory=dict)  # source key -> target key(s)
    dropped: dict[str, str] = field(default_factory=dict)  # source key -> reason
    heads: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Reading the source
# ---------------------------------------------------------------------------------------------------------------


def read_source_config(source: Path) -> dict[str, Any]:
    path = source / "config.json"
    if not path.is_file():
        raise ConversionError(f"{source}: no config.json; not a checkpoint directory")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}: malformed JSON ({exc.msg})") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    if config.get("format") == "humanaes-model":
        raise ConversionError(f"{source} is already a model_core checkpoint; nothing to convert")
    if config.get("model_type") == "internvl" or "text_config" in config:
        raise ConversionError(f"{source} is already in the transformers (-hf) InternVL layout; use it as a backbone "
                              "directly (backbone.source) instead of converting it")
    if not isinstance(config.get("llm_config"), dict) or not isinstance(config.get("vision_config"), dict):
        raise ConversionError(
            f"{path}: unknown layout (model_type={config.get('model_type')!r}): expected an InternVL2 "
            "InternVLChatConfig with 'vision_config' and 'llm_config' objects")
    return config


def read_source_weights(source: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint: model.safetensors, a sharded safetensors index, or pytorch_model*.bin."""
    from safetensors.torch import load_file

    index = source / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [source / name for name in shards]
    elif (source / "model.safetensors").is_file():
        files = [source / "model.safetensors"]
    else:
        bin_index = source / "pytorch_model.bin.index.json"
        if bin_index.is_file():
            files = [source / n for n in sorted(set(json.loads(bin_index.read_text())["weight_map"].values()))]
        elif (source / "pytorch_model.bin").is_file():
            files = [source / "pytorch_model.bin"]
        else:
            raise ConversionError(f"{source}: no weights (model.safetensors[.index.json] or pytorch_model.bin)")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise ConversionError(f"{path}: listed in the weight index but missing")
        part = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(
            str(path), map_location="cpu", weights_only=True)
        duplicate = sorted(set(part) & set(state))
        if duplicate:
            raise ConversionError(f"{path}: tensor {duplicate[0]} appears in more than one weight file")
        state.update(part)
    return state


# ---------------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------------


def _vision_layers_kept(select_layer: int, n_layers: int) -> int:
    """How many encoder layers the original's ``hidden_states[select_layer]`` has passed (entry k: k layers)."""
    kept = n_layers + 1 + select_layer if select_layer < 0 else select_layer
    if not 1 <= kept <= n_layers:
        raise ConversionError(f"select_layer {select_layer} does not pick an encoder layer of the {n_layers}-layer "
                              "vision tower")
    return kept


def build_hf_config(config: dict[str, Any], *, image_token_id: int, report: ConversionReport):
    """The transformers InternVLConfig equivalent of an InternVLChatConfig."""
    from transformers import InternVLConfig

    vision, llm = config["vision_config"], config["llm_config"]
    arch = (llm.get("architectures") or [None])[0]
    if arch not in SUPPORTED_LLMS:
        raise ConversionError(f"language model {arch!r} is not supported; this converter handles "
                              f"{', '.join(SUPPORTED_LLMS)} (InternVL2-1B/2B/8B/26B, HumanAesExpert-1B/8B)")
    family = SUPPORTED_LLMS[arch]
    ps_version = config.get("ps_version", "v1")
    if ps_version != "v2":
        raise ConversionError(f"ps_version {ps_version!r}: only the 'v2' pixel shuffle (every InternVL2 release) "
                              "has an exact equivalent in transformers' InternVL")
    image_size = int(vision.get("image_size", 224))
    force = config.get("force_image_size")
    if force not in (None, image_size):
        raise ConversionError(f"force_image_size {force} differs from the vision tower's image_size {image_size}: "
                              "the original would interpolate position embeddings at run time; not supported")
    n_layers = int(vision["num_hidden_layers"])
    kept = _vision_layers_kept(int(config.get("select_layer", -1)), n_layers)
    downsample = float(config.get("downsample_ratio", 0.5))
    patch = int(vision.get("patch_size", 14))
    vision_hf = dict(
        hidden_size=int(vision["hidden_size"]), num_hidden_layers=kept,
        num_attention_heads=int(vision["num_attention_heads"]), intermediate_size=int(vision["intermediate_size"]),
        hidden_act=vision.get("hidden_act", "gelu"), layer_norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
        norm_type=vision.get("norm_type", "rms_norm"), attention_bias=bool(vision.get("qkv_bias", True)),
        use_qk_norm=bool(vision.get("qk_normalization", False)), image_size=[image_size] * 2,
        patch_size=[patch] * 2, num_channels=int(vision.get("num_channels", 3)),
        layer_scale_init_value=0.1, use_mean_pooling=True,  # lambda_1/2 are loaded: the init value is moot
        use_absolute_position_embeddings=True, hidden_dropout_prob=0.0, attention_dropout=0.0,
        projection_dropout=0.0,
    )
    common = dict(
        vocab_size=int(llm["vocab_size"]), hidden_size=int(llm["hidden_size"]),
        intermediate_size=int(llm["intermediate_size"]), num_hidden_layers=int(llm["num_hidden_layers"]),
        num_attention_heads=int(llm["num_attention_heads"]),
        num_key_value_heads=int(llm.get("num_key_value_heads") or llm["num_attention_heads"]),
        hidden_act=llm.get("hidden_act", "silu"), max_position_embeddings=int(llm.get("max_position_embeddings", 4096)),
        rms_norm_eps=float(llm.get("rms_norm_eps", 1e-6)), rope_theta=float(llm.get("rope_theta", 10000.0)),
        rope_scaling=_rope_scaling(llm.get("rope_scaling")), tie_word_embeddings=False,
        bos_token_id=llm.get("bos_token_id"), eos_token_id=llm.get("eos_token_id"),
        pad_token_id=llm.get("pad_token_id"),
    )
    if family == "qwen2":
        text_hf = dict(model_type="qwen2", **common, use_sliding_window=bool(llm.get("use_sliding_window", False)),
                       sliding_window=llm.get("sliding_window"), max_window_layers=llm.get("max_window_layers", 28),
                       attention_dropout=float(llm.get("attention_dropout", 0.0)))
    else:  # InternLM2 is a Llama with fused qkv: transformers' own converter maps it onto LlamaConfig
        text_hf = dict(model_type="llama", **common, attention_bias=bool(llm.get("bias", False)), mlp_bias=False,
                       head_dim=int(llm["hidden_size"]) // int(llm["num_attention_heads"]))
    side = image_size // patch
    hf = InternVLConfig(
        vision_config=vision_hf, text_config=text_hf, image_token_id=image_token_id, downsample_ratio=downsample,
        image_seq_length=int(side * side * downsample * downsample), projector_hidden_act="gelu",
        vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
    hf.architectures = ["InternVLForConditionalGeneration"]
    report.llm_family = family
    report.vision = {"layers_in_source": n_layers, "layers_kept": kept, "select_layer": config.get("select_layer", -1),
                     "ps_version": ps_version, "image_size": image_size, "patch_size": patch,
                     "downsample_ratio": downsample, "norm_type": vision_hf["norm_type"]}
    report.config = {"llm_architecture": arch, "template": config.get("template"),
                     "dynamic_image_size": config.get("dynamic_image_size"), "max_dynamic_patch":
                     config.get("max_dynamic_patch"), "use_thumbnail": config.get("use_thumbnail"),
                     "text_model_type": text_hf["model_type"], "rope_scaling": text_hf["rope_scaling"],
                     "llm_tie_word_embeddings": bool(llm.get("tie_word_embeddings", False)),
                     "image_token_id": image_token_id, "image_seq_length": hf.image_seq_length}
    return hf


def _rope_scaling(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    value = dict(value)
    kind = value.pop("type", None) or value.pop("rope_type", None)
    if kind not in ("dynamic", "linear"):
        raise ConversionError(f"rope_scaling type {kind!r} has no equivalent here (dynamic or linear only)")
    return {"rope_type": kind, **value}


# ---------------------------------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------------------------------

_VISION_RENAMES = (
    (r"embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"embeddings\.patch_embedding\.(weight|bias)$", r"embeddings.patch_embeddings.projection.\1"),
    (r"encoder\.layers\.(\d+)\.ls1$", r"encoder.layer.\1.lambda_1"),
    (r"encoder\.layers\.(\d+)\.ls2$", r"encoder.layer.\1.lambda_2"),
    (r"encoder\.layers\.(\d+)\.norm1\.(weight|bias)$", r"encoder.layer.\1.layernorm_before.\2"),
    (r"encoder\.layers\.(\d+)\.norm2\.(weight|bias)$", r"encoder.layer.\1.layernorm_after.\2"),
    (r"encoder\.layers\.(\d+)\.attn\.proj\.(weight|bias)$", r"encoder.layer.\1.attention.projection_layer.\2"),
    (r"encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.weight$", r"encoder.layer.\1.attention.\2.weight"),
    (r"encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", r"encoder.layer.\1.mlp.\2.\3"),
)
_PROJECTOR = {"0": "layer_norm", "1": "linear_1", "3": "linear_2"}
_INTERNLM2_RENAMES = (
    (r"model\.tok_embeddings\.weight$", "embed_tokens.weight"),
    (r"model\.norm\.weight$", "norm.weight"),
    (r"model\.layers\.(\d+)\.attention\.wo\.(weight|bias)$", r"layers.\1.self_attn.o_proj.\2"),
    (r"model\.layers\.(\d+)\.feed_forward\.w1\.weight$", r"layers.\1.mlp.gate_proj.weight"),
    (r"model\.layers\.(\d+)\.feed_forward\.w3\.weight$", r"layers.\1.mlp.up_proj.weight"),
    (r"model\.layers\.(\d+)\.feed_forward\.w2\.weight$", r"layers.\1.mlp.down_proj.weight"),
    (r"model\.layers\.(\d+)\.attention_norm\.weight$", r"layers.\1.input_layernorm.weight"),
    (r"model\.layers\.(\d+)\.ffn_norm\.weight$", r"layers.\1.post_attention_layernorm.weight"),
)


def split_vision_qkv(fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InternViT ``attn.qkv`` (weight (3D, D) or bias (3D,)): rows are [q; k; v]."""
    if fused.shape[0] % 3:
        raise ConversionError(f"attn.qkv has {fused.shape[0]} output rows, not a multiple of 3")
    q, k, v = fused.chunk(3, dim=0)
    return q, k, v


def split_internlm2_wqkv(fused: torch.Tensor, *, num_heads: int, num_kv_heads: int, head_dim: int):
    """InternLM2 ``attention.wqkv`` (weight (kv*(g+2)*hd, D) or bias) -> Llama q (H*hd), k (kv*hd), v (kv*hd)."""
    groups = num_heads // num_kv_heads
    expected = num_kv_heads * (groups + 2) * head_dim
    if fused.shape[0] != expected:
        raise ConversionError(f"attention.wqkv has {fused.shape[0]} output rows, expected {expected} "
                              f"({num_kv_heads} kv heads x ({groups} query + key + value) x {head_dim})")
    rest = fused.shape[1:]
    grouped = fused.reshape(num_kv_heads, groups + 2, head_dim, *rest)  # (kv, g+2, hd, [D])
    q = grouped[:, :groups].reshape(num_heads * head_dim, *rest)
    k = grouped[:, -2].reshape(num_kv_heads * head_dim, *rest)
    v = grouped[:, -1].reshape(num_kv_heads * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def _rename(key: str, rules) -> str | None:
    for pattern, replacement in rules:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def map_tensors(
    source: dict[str, torch.Tensor], hf_config, report: ConversionReport,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(backbone state dict in the -hf layout, HumanAesExpert head tensors by head). Fills consumed/dropped;
    raises ConversionError naming tensors no rule explains."""
    text = hf_config.text_config
    kept_layers = hf_config.vision_config.num_hidden_layers
    family = report.llm_family
    head_dim = text.hidden_size // text.num_attention_heads
    out: dict[str, torch.Tensor] = {}
    heads: dict[str, dict[str, torch.Tensor]] = {"regression": {}, "expert": {}}
    unexplained: list[str] = []

    def emit(src: str, pairs: list[tuple[str, torch.Tensor]]) -> None:
        for target, tensor in pairs:
            if target in out:
                raise ConversionError(f"{src}: target {target} is produced twice")
            out[target] = tensor
        report.consumed[src] = [t for t, _ in pairs]

    for key, tensor in source.items():
        if key.startswith("vision_model."):
            rest = key[len("vision_model."):]
            layer = re.match(r"encoder\.layers\.(\d+)\.", rest)
            if layer and int(layer.group(1)) >= kept_layers:
                report.dropped[key] = (f"vision layer {layer.group(1)} comes after the layer select_layer reads "
                                       f"({kept_layers} of {report.vision['layers_in_source']} used): never used")
                continue
            qkv = re.fullmatch(r"encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)", rest)
            if qkv:
                base = f"model.vision_tower.encoder.layer.{qkv.group(1)}.attention"
                q, k, v = split_vision_qkv(tensor)
                emit(key, [(f"{base}.{n}_proj.{qkv.group(2)}", t) for n, t in zip("qkv", (q, k, v))])
                continue
            target = _rename(rest, _VISION_RENAMES)
            if target is None:
                unexplained.append(key)
                continue
            emit(key, [("model.vision_tower." + target, tensor)])
        elif key.startswith("mlp1."):
            match = re.fullmatch(r"mlp1\.(\d+)\.(weight|bias)", key)
            if not match or match.group(1) not in _PROJECTOR:
                unexplained.append(key)
                continue
            emit(key, [(f"model.multi_modal_projector.{_PROJECTOR[match.group(1)]}.{match.group(2)}", tensor)])
        elif key.startswith("language_model."):
            rest = key[len("language_model."):]
            head = next((name for name, prefix in HEAD_SOURCE_PREFIX.items() if key.startswith(prefix)), None)
            if head is not None:
                heads[head][key] = tensor
                continue
            if rest.endswith("rotary_emb.inv_freq"):
                report.dropped[key] = "rotary inverse frequencies: a buffer recomputed from rope_theta"
                continue
            if rest in ("lm_head.weight", "output.weight"):
                emit(key, [("lm_head.weight", tensor)])
                continue
            if family == "internlm2":
                wqkv = re.fullmatch(r"model\.layers\.(\d+)\.attention\.wqkv\.(weight|bias)", rest)
                if wqkv:
                    base = f"model.language_model.layers.{wqkv.group(1)}.self_attn"
                    q, k, v = split_internlm2_wqkv(tensor, num_heads=text.num_attention_heads,
                                                   num_kv_heads=text.num_key_value_heads, head_dim=head_dim)
                    emit(key, [(f"{base}.{n}_proj.{wqkv.group(2)}", t) for n, t in zip("qkv", (q, k, v))])
                    continue
                target = _rename(rest, _INTERNLM2_RENAMES)
            else:  # Qwen2ForCausalLM: the -hf text model uses the same names without the "model." level
                target = rest[len("model."):] if rest.startswith("model.") else None
            if target is None:
                unexplained.append(key)
                continue
            emit(key, [("model.language_model." + target, tensor)])
        else:
            unexplained.append(key)
    if unexplained:
        raise ConversionError(f"{len(unexplained)} tensor(s) that no conversion rule explains (unknown layout or "
                              f"extra weights), e.g. {', '.join(sorted(unexplained)[:5])}")
    if "lm_head.weight" not in out and report.config.get("llm_tie_word_embeddings"):
        embed = out.get("model.language_model.embed_tokens.weight")
        if embed is not None:
            out["lm_head.weight"] = embed.clone()
            report.warnings.append("lm_head: the language model ties it to the input embeddings; written as a copy")
    return out, heads


def check_against_model(state: dict[str, torch.Tensor], hf_config, report: ConversionReport) -> None:
    """Every tensor the -hf model expects is produced, with its shape; nothing else is."""
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        skeleton = InternVLForConditionalGeneration(hf_config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    origin = {t: s for s, targets in report.consumed.items() for t in targets}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) in the source, e.g. {missing[0]} (a {report.llm_family} "
                        "checkpoint with every layer was expected)")
    if extra:
        problems.append(f"{len(extra)} tensor(s) the converted model has no place for, e.g. "
                        f"{origin.get(extra[0], extra[0])}")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape, e.g. {origin.get(k, k)}: "
                        f"{tuple(state[k].shape)} where the config implies {expected[k]}")
    if problems:
        raise ConversionError("; ".join(problems))


# ---------------------------------------------------------------------------------------------------------------
# HumanAesExpert heads
# ---------------------------------------------------------------------------------------------------------------


def _linear_parts(tensors: dict[str, torch.Tensor], prefix: str, outputs: int, hidden: int):
    """(weight, bias or None) when ``tensors`` is exactly one Linear hidden->outputs; else (None, why)."""
    names = {k[len(prefix):]: v for k, v in tensors.items()}
    if set(names) - {"weight", "bias"} or "weight" not in names:
        return None, f"not a single Linear (tensors {', '.join(sorted(names))})"
    weight, bias = names["weight"], names.get("bias")
    if tuple(weight.shape) != (outputs, hidden):
        return None, f"weight shape {tuple(weight.shape)}, the model needs ({outputs}, {hidden})"
    if bias is not None and tuple(bias.shape) != (outputs,):
        return None, f"bias shape {tuple(bias.shape)}, the model needs ({outputs},)"
    return (weight, bias), ""


def _side_file_heads(source: Path, report: ConversionReport) -> dict[str, dict[str, torch.Tensor]]:
    """regression_head.pth / expert_head.pth next to the checkpoint (the reference saves them there too)."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for head, name in HEAD_SIDE_FILES.items():
        path = source / name
        if not path.is_file():
            continue
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable side file is reported, not fatal
            report.warnings.append(f"{name}: unreadable ({exc}); ignored")
            continue
        if isinstance(state, torch.nn.Module):
            state = state.state_dict()
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            report.warnings.append(f"{name}: not a state dict of tensors; ignored")
            continue
        found[head] = {HEAD_SOURCE_PREFIX[head] + k.rsplit(".", 1)[-1]: v for k, v in state.items()}
    return found


def plan_heads(
    heads: dict[str, dict[str, torch.Tensor]], side: dict[str, dict[str, torch.Tensor]], *, hidden: int,
    head_kind: str | None, linear_output: str, report: ConversionReport,
) -> tuple[str, dict[str, tuple[torch.Tensor, torch.Tensor | None]]]:
    """Decide the model's head_kind and which heads carry. Returns (head_kind, {head: (weight, bias)})."""
    fits: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    why: dict[str, str] = {}
    origin: dict[str, str] = {}
    for head in ("regression", "expert"):
        prefix = HEAD_SOURCE_PREFIX[head]
        in_model, beside = heads.get(head, {}), side.get(head, {})
        if in_model and beside:
            same = set(in_model) == set(beside) and all(
                in_model[k].shape == beside[k].shape and torch.equal(in_model[k].float(), beside[k].float())
                for k in in_model)
            note = "identical to" if same else "DIFFERENT from"
            report.warnings.append(f"{HEAD_SIDE_FILES[head]} is {note} the {prefix}* tensors in the checkpoint; "
                                   "the checkpoint's are used")
        tensors, origin[head] = (in_model, "checkpoint") if in_model else (beside, HEAD_SIDE_FILES[head])
        if not tensors:
            why[head] = "absent from the source"
            continue
        parts, reason = _linear_parts(tensors, prefix, HEAD_OUTPUTS[head], hidden)
        if parts is None:
            why[head] = reason
        else:
            fits[head] = parts
    if head_kind is None:
        head_kind = ("linear_sigmoid" if linear_output == "sigmoid" else "linear") if fits else "mlp"
    carried: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for head in ("regression", "expert"):
        source_keys = sorted(heads.get(head, {}))
        if head in fits and head_kind != "mlp":
            carried[head] = fits[head]
            for key in source_keys:
                report.consumed[key] = [f"{head}_head.proj.{key.rsplit('.', 1)[-1]}"]
            report.heads[head] = {"status": "carried", "from": origin[head], "kind": head_kind,
                                  "bias": "carried" if fits[head][1] is not None else "absent in source: zero"}
            continue
        reason = why.get(head) or f"head_kind {head_kind!r} was requested: a Linear head does not fit an MLP head"
        for key in source_keys:
            report.dropped[key] = f"HumanAesExpert {head} head not carried: {reason}"
        report.heads[head] = {"status": "re-initialised", "kind": head_kind, "reason": reason}
        if source_keys or head in side:
            logger.warning("%s head re-initialised: %s", head, reason)
    report.heads["head_kind"] = head_kind
    report.heads["output_transform"] = {"mlp": "our MLP + sigmoid", "linear": "identity (raw Linear output)",
                                        "linear_sigmoid": "sigmoid(Linear)"}[head_kind]
    return head_kind, carried


def reference_head_code_lines(source: Path) -> list[str]:
    """Lines of the checkpoint's own modeling code that use the heads: evidence of their output transform."""
    lines = []
    for path in sorted(source.glob("*.py")):
        try:
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                if "lm_regression_head" in line or "expert_head" in line:
                    lines.append(f"{path.name}:{number}: {line.strip()}")
        except OSError:
            continue
    return lines[:50]


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------


def write_tokenizer(source: Path, target: Path, report: ConversionReport, *, tokenizer_dir: Path | None = None):
    """Copy (and if needed de-remote) the tokenizer into ``target``; returns the loaded tokenizer.

    Supported: the Qwen2 tokenizer files of InternVL2-1B / HumanAesExpert-1B (vocab.json + merges.txt, loaded
    as Qwen2TokenizerFast); a remote-code tokenizer (InternLM2's, InternVL2-8B / HumanAesExpert-8B) with a
    ``tokenizer.json``, or with only its sentencepiece BPE ``tokenizer.model``, which is turned into a Llama-style
    ``tokenizer.json`` (model_core.sp_tokenizer; no sentencepiece package needed); both are then loaded as
    transformers' PreTrainedTokenizerFast; or any fast tokenizer directory given with ``tokenizer_dir``."""
    from transformers import AutoTokenizer

    origin = tokenizer_dir or source
    copied = [name for name in TOKENIZER_FILES if (origin / name).is_file()]
    if not copied:
        raise ConversionError(f"{origin}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    target.mkdir(parents=True, exist_ok=True)
    for name in copied:
        shutil.copy2(origin / name, target / name)
    config_path = target / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    changes = []
    if tok_config.get("auto_map"):
        tok_config.pop("auto_map")
        changes.append("removed auto_map (remote tokenizer code is not used)")
    cls = tok_config.get("tokenizer_class", "")
    if cls and not _transformers_has(cls):
        if not (target / "tokenizer.json").is_file():
            if not (target / "tokenizer.model").is_file():
                raise ConversionError(
                    f"{origin}: tokenizer class {cls} is remote code and there is neither a tokenizer.json nor a "
                    "tokenizer.model to build one from; pass --tokenizer DIR with a fast tokenizer of the same "
                    "vocabulary")
            from model_core.sp_tokenizer import SentencePieceError, convert_directory

            try:
                changes += convert_directory(target)
            except (SentencePieceError, OSError, KeyError, ValueError) as exc:
                raise ConversionError(f"{origin}: tokenizer.model cannot be converted ({exc}); pass --tokenizer DIR "
                                      "with a fast tokenizer of the same vocabulary") from None
        tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
        changes.append(f"tokenizer_class {cls} -> PreTrainedTokenizerFast (reads tokenizer.json)")
    if changes:
        config_path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear conversion error
        raise ConversionError(f"{origin}: the tokenizer does not load without remote code ({exc})") from None
    ids = {}
    for token in REQUIRED_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ConversionError(f"{origin}: the tokenizer has no {token} token")
        ids[token] = int(token_id)
    report.tokenizer = {"from": str(origin), "files": copied, "class": type(tokenizer).__name__,
                        "changes": changes, "token_ids": ids, "size": len(tokenizer)}
    return tokenizer


def _transformers_has(name: str) -> bool:
    import transformers

    try:
        return getattr(transformers, name, None) is not None
    except Exception:  # noqa: BLE001 - a lazy import error means the class cannot be used here
        return False


# ---------------------------------------------------------------------------------------------------------------
# The conversion
# ---------------------------------------------------------------------------------------------------------------


def convert_internvl2(
    source: str | Path, output: str | Path, *, lora_r: int = 16, head_kind: str | None = None,
    linear_head_output: str = "identity", tokenizer_dir: str | Path | None = None, device: str = "cpu",
    precision: str = "fp32",
) -> ConversionReport:
    """Convert ``source`` (original InternVL2 / HumanAesExpert layout) into a model_core checkpoint at ``output``.

    ``head_kind``: None = "linear" when the source carries HumanAesExpert heads that fit, else "mlp".
    ``linear_head_output``: "identity" or "sigmoid", the output transform of carried Linear heads.
    ``device``/``precision``: where the converted model is built once to check it loads and to save the
    checkpoint (the 8B needs ~32 GB of RAM in fp32 on CPU; use a GPU with bf16 there)."""
    from model_core.model import BackboneConfig, LoraSpec, ModelConfig, build_model, save_model

    source = Path(source)
    output = Path(output)
    if not source.is_dir():
        raise ConversionError(f"{source}: not a directory")
    if output.exists():
        raise ConversionError(f"{output} already exists; choose a new output directory")
    if head_kind not in (None, "mlp", "linear", "linear_sigmoid"):
        raise ConversionError(f"head_kind must be mlp, linear or linear_sigmoid, got {head_kind!r}")
    if linear_head_output not in ("identity", "sigmoid"):
        raise ConversionError(f"linear_head_output must be identity or sigmoid, got {linear_head_output!r}")
    if lora_r < 0:
        raise ConversionError(f"lora_r must be >= 0, got {lora_r}")
    final = output.parent.resolve() / output.name
    report = ConversionReport(source=str(source.resolve()), output=str(final))
    config = read_source_config(source)
    weights = read_source_weights(source)
    report.n_source_tensors = len(weights)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.converting-", dir=str(final.parent)))
    try:
        backbone_dir = work / BACKBONE_DIR
        tokenizer = write_tokenizer(source, backbone_dir, report,
                                    tokenizer_dir=Path(tokenizer_dir) if tokenizer_dir else None)
        image_token_id = report.tokenizer["token_ids"][IMG_CONTEXT]
        hf_config = build_hf_config(config, image_token_id=image_token_id, report=report)
        if image_token_id >= hf_config.text_config.vocab_size:
            raise ConversionError(f"{IMG_CONTEXT} id {image_token_id} is outside the language model's vocabulary "
                                  f"({hf_config.text_config.vocab_size})")
        state, heads = map_tensors(weights, hf_config, report)
        check_against_model(state, hf_config, report)
        side = _side_file_heads(source, report)
        kind, carried = plan_heads(heads, side, hidden=hf_config.text_config.hidden_size, head_kind=head_kind,
                                   linear_output=linear_head_output, report=report)
        code = reference_head_code_lines(source)
        if code:
            report.heads["reference_code_lines"] = code
            if carried and any("sigmoid" in line for line in code) != (kind == "linear_sigmoid"):
                report.warnings.append("the checkpoint's own code mentions the heads "
                                       + ("with" if kind != "linear_sigmoid" else "without")
                                       + " a sigmoid: check heads.reference_code_lines and --linear-head-output")
        _check_accounted(weights, report)
        _write_backbone(backbone_dir, state, hf_config)
        del state
        tokenizer.save_pretrained(str(backbone_dir))

        # InternVL2 and HumanAesExpert were fine-tuned with the reference trainer's chat layout: training on from
        # here keeps it (docs/training-recipes.md).
        model_config = ModelConfig(backbone=BackboneConfig(source=str(backbone_dir)),
                                   lora=LoraSpec(r=lora_r, alpha=2 * lora_r) if lora_r else None, head_kind=kind,
                                   chat=ChatFormat(recipe=default_recipe_for("internvl2")))
        model = build_model(model_config, device=device, precision=precision)
        _load_heads(model, carried)
        model.config = dataclasses.replace(
            model_config, backbone=dataclasses.replace(model_config.backbone, source=str(final / BACKBONE_DIR)))
        save_model(model, work, metadata={"converted_from": report.source, "llm_family": report.llm_family,
                                          "template": report.config.get("template"), "report": REPORT_FILE})
        (work / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    logger.info("converted %s (%s, %d tensors: %d consumed, %d dropped) into %s", source, report.llm_family,
                report.n_source_tensors, len(report.consumed), len(report.dropped), final)
    return report


def _check_accounted(weights: dict[str, torch.Tensor], report: ConversionReport) -> None:
    unaccounted = sorted(set(weights) - set(report.consumed) - set(report.dropped))
    if unaccounted:
        raise ConversionError(f"{len(unaccounted)} source tensor(s) neither consumed nor dropped, "
                              f"e.g. {unaccounted[0]}")


def _write_backbone(directory: Path, state: dict[str, torch.Tensor], hf_config) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    dtypes = {t.dtype for t in state.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    hf_config.dtype = str(dtype).replace("torch.", "")
    hf_config.save_pretrained(str(directory))
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"),
              metadata={"format": "pt", "converted_by": "model_core.convert"})


def _load_heads(model, carried: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    for head, (weight, bias) in carried.items():
        module = getattr(model, f"{head}_head").proj
        with torch.no_grad():
            module.weight.copy_(weight.float())
            if bias is None:
                module.bias.zero_()
            else:
                module.bias.copy_(bias.float())


__all__ = ["ConversionError", "ConversionReport", "convert_internvl2", "split_internlm2_wqkv", "split_vision_qkv"]
