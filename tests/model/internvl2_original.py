"""Tiny checkpoints in the ORIGINAL InternVL2 / HumanAesExpert layout, and the original computations by hand.

The key names and config fields are those OpenGVLab publishes with InternVL2 (InternVLChatConfig, InternViT
``vision_model.*``, ``mlp1.{0,1,3}``, ``language_model.*`` of Qwen2ForCausalLM or InternLM2ForCausalLM) and that
KwaiVGI adds for HumanAesExpert (``language_model.lm_regression_head``, ``language_model.expert_head``, and the
same heads as ``regression_head.pth`` / ``expert_head.pth`` beside the weights). Sizes are tiny and random.

The ``original_*`` functions recompute what InternVL2's remote code computes, from the ORIGINAL tensors (fused
qkv split here, layer scales, the v2 pixel shuffle, the mlp1 projector, InternLM2's grouped wqkv), so that tests
can compare the converted model against them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from model_core.standard import LEVELS

VISION = dict(hidden=32, heads=4, intermediate=64, layers=3, image=32, patch=8)
TEXT = dict(hidden=32, heads=4, kv_heads=2, intermediate=64, layers=2)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>",
           "<ref>", "</ref>", "<box>", "</box>"]


# --- tokenizer --------------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (what byte-level BPE vocabularies are written in)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def byte_level_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """256 byte symbols + merges that spell each level word (with its leading space) as one token."""
    table = _bytes_to_unicode()
    vocab = {table[b]: i for i, b in enumerate(sorted(table))}
    merges: list[tuple[str, str]] = []
    for word in [f" {level}" for level in LEVELS] + [" The", " aesthetics", " human", " image", " is"]:
        symbols = "".join(table[b] for b in word.encode())
        left = symbols[0]
        for char in symbols[1:]:
            merged = left + char
            if merged not in vocab:
                merges.append((left, char))
                vocab[merged] = len(vocab)
            left = merged
    return vocab, merges


def write_qwen2_tokenizer(directory: Path) -> int:
    """vocab.json + merges.txt + tokenizer_config.json as InternVL2-1B ships them (Qwen2Tokenizer, added tokens
    after the BPE vocabulary). Returns the total number of tokens."""
    vocab, merges = byte_level_vocab()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    added = {str(len(vocab) + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                   "single_word": False, "special": True} for i, t in enumerate(SPECIAL)}
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": added, "additional_special_tokens": SPECIAL[1:], "bos_token": None,
        "chat_template": None, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 8192, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }, ensure_ascii=False))
    (directory / "special_tokens_map.json").write_text(json.dumps({
        "additional_special_tokens": SPECIAL[1:], "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}))
    return len(vocab) + len(SPECIAL)


INTERNLM2_ADDED = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]


def write_internlm2_sentencepiece(directory: Path) -> int:
    """InternLM2's tokenizer as InternVL2-8B publishes it: a sentencepiece BPE ``tokenizer.model`` (unk/bos/eos,
    256 byte pieces, normal pieces with scores = -id, ``<|im_end|>``/``<|im_start|>`` as user-defined pieces, no
    dummy prefix), InternVL's ``added_tokens.json`` (``<img>`` ... right after the pieces) and a remote-code
    ``tokenizer_config.json``."""
    from model_core.sp_tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED, SentencePieceModel, write_model
    from model_core.text import _corpus

    pieces = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    normal: list[str] = []
    for char in sorted({c for text in _corpus() + ["\n", "0123456789"] for c in text.replace(" ", "▁")}):
        normal.append(char)
    for word in [f"▁{level}" for level in LEVELS] + ["▁aesthetics", "▁human", "▁image"]:
        for end in range(2, len(word) + 1):
            if word[:end] not in normal:
                normal.append(word[:end])
    pieces += [(p, -float(len(pieces) + i), NORMAL) for i, p in enumerate(normal)]
    pieces += [("<|im_end|>", 0.0, USER_DEFINED), ("<|im_start|>", 0.0, USER_DEFINED)]
    write_model(directory / "tokenizer.model", SentencePieceModel(pieces=pieces, model_type="bpe",
                                                                  byte_fallback=True, add_dummy_prefix=False))
    added = {token: len(pieces) + i for i, token in enumerate(INTERNLM2_ADDED)}
    (directory / "added_tokens.json").write_text(json.dumps(added))
    _internlm2_tokenizer_config(directory)
    return len(pieces) + len(INTERNLM2_ADDED)


def _internlm2_tokenizer_config(directory: Path) -> None:
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer",
                                       "tokenization_internlm2_fast.InternLM2TokenizerFast"]},
        "tokenizer_class": "InternLM2Tokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "</s>", "add_bos_token": True, "add_eos_token": False, "model_max_length": 8192,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"] + INTERNLM2_ADDED,
    }))
    (directory / "tokenization_internlm2.py").write_text("# remote tokenizer code (not used by the converter)\n")


def write_internlm2_tokenizer(directory: Path) -> int:
    """A tokenizer.json (fast tokenizer) with InternLM2's remote-code tokenizer_config (auto_map to
    tokenization_internlm2*.py, tokenizer_class InternLM2Tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = byte_level_vocab()
    specials = ["<unk>", "<s>", "</s>"] + SPECIAL[1:]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(directory / "tokenizer.json"))
    _internlm2_tokenizer_config(directory)
    return tokenizer.get_vocab_size()


# --- checkpoint -------------------------------------------------------------------------------------------------


def _vision_config(*, layers: int, norm_type: str, qk_norm: bool) -> dict:
    v = VISION
    return {"architectures": ["InternVisionModel"], "attention_dropout": 0.0, "drop_path_rate": 0.0, "dropout": 0.0,
            "hidden_act": "gelu", "hidden_size": v["hidden"], "image_size": v["image"], "initializer_factor": 1.0,
            "initializer_range": 0.02, "intermediate_size": v["intermediate"], "layer_norm_eps": 1e-6,
            "model_type": "intern_vit_6b", "norm_type": norm_type, "num_attention_heads": v["heads"],
            "num_channels": 3, "num_hidden_layers": layers, "patch_size": v["patch"],
            "qk_normalization": qk_norm, "qkv_bias": True, "torch_dtype": "float32", "use_bfloat16": False,
            "use_flash_attn": False}


def _llm_config(family: str, vocab: int) -> dict:
    t = TEXT
    common = {"hidden_act": "silu", "hidden_size": t["hidden"], "intermediate_size": t["intermediate"],
              "max_position_embeddings": 32768, "num_attention_heads": t["heads"],
              "num_hidden_layers": t["layers"], "num_key_value_heads": t["kv_heads"], "tie_word_embeddings": False,
              "torch_dtype": "float32", "use_cache": True, "vocab_size": vocab}
    if family == "qwen2":
        return {**common, "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
                "bos_token_id": vocab - len(SPECIAL), "eos_token_id": vocab - len(SPECIAL) + 2,
                "max_window_layers": 21, "model_type": "qwen2", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                "sliding_window": 32768, "use_sliding_window": False, "attn_implementation": "eager"}
    return {**common, "architectures": ["InternLM2ForCausalLM"], "auto_map": {
        "AutoConfig": "configuration_internlm2.InternLM2Config",
        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        "bias": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "model_type": "internlm2",
        "rms_norm_eps": 1e-5, "rope_scaling": {"factor": 2.0, "type": "dynamic"}, "rope_theta": 1000000,
        "attn_implementation": "eager"}


def original_tensors(family: str, vocab: int, *, vision_layers: int, qk_norm: bool, norm_type: str,
                     heads: bool, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    v, t = VISION, TEXT
    d, n_patch = v["hidden"], (v["image"] // v["patch"]) ** 2
    s: dict[str, torch.Tensor] = {
        "vision_model.embeddings.class_embedding": r(1, 1, d),
        "vision_model.embeddings.patch_embedding.weight": r(d, 3, v["patch"], v["patch"], scale=0.05),
        "vision_model.embeddings.patch_embedding.bias": r(d),
        "vision_model.embeddings.position_embedding": r(1, n_patch + 1, d),
    }
    for i in range(vision_layers):
        p = f"vision_model.encoder.layers.{i}."
        s[p + "attn.qkv.weight"] = r(3 * d, d)
        s[p + "attn.qkv.bias"] = r(3 * d)
        s[p + "attn.proj.weight"] = r(d, d)
        s[p + "attn.proj.bias"] = r(d)
        if qk_norm:
            s[p + "attn.q_norm.weight"] = 1 + r(d)
            s[p + "attn.k_norm.weight"] = 1 + r(d)
        s[p + "ls1"] = 0.5 + r(d)
        s[p + "ls2"] = 0.5 + r(d)
        for norm in ("norm1", "norm2"):
            s[p + norm + ".weight"] = 1 + r(d)
            if norm_type == "layer_norm":
                s[p + norm + ".bias"] = r(d)
        s[p + "mlp.fc1.weight"] = r(v["intermediate"], d)
        s[p + "mlp.fc1.bias"] = r(v["intermediate"])
        s[p + "mlp.fc2.weight"] = r(d, v["intermediate"])
        s[p + "mlp.fc2.bias"] = r(d)
    shuffled, h = 4 * d, t["hidden"]
    s.update({"mlp1.0.weight": 1 + r(shuffled), "mlp1.0.bias": r(shuffled), "mlp1.1.weight": r(h, shuffled),
              "mlp1.1.bias": r(h), "mlp1.3.weight": r(h, h), "mlp1.3.bias": r(h)})
    hd = h // t["heads"]
    kv = t["kv_heads"] * hd
    if family == "qwen2":
        s["language_model.model.embed_tokens.weight"] = r(vocab, h, scale=1.0)
        for i in range(t["layers"]):
            p = f"language_model.model.layers.{i}."
            s.update({p + "self_attn.q_proj.weight": r(h, h), p + "self_attn.q_proj.bias": r(h),
                      p + "self_attn.k_proj.weight": r(kv, h), p + "self_attn.k_proj.bias": r(kv),
                      p + "self_attn.v_proj.weight": r(kv, h), p + "self_attn.v_proj.bias": r(kv),
                      p + "self_attn.o_proj.weight": r(h, h), p + "mlp.gate_proj.weight": r(t["intermediate"], h),
                      p + "mlp.up_proj.weight": r(t["intermediate"], h),
                      p + "mlp.down_proj.weight": r(h, t["intermediate"]), p + "input_layernorm.weight": 1 + r(h),
                      p + "post_attention_layernorm.weight": 1 + r(h)})
        s["language_model.model.norm.weight"] = 1 + r(h)
        s["language_model.lm_head.weight"] = r(vocab, h, scale=1.0)
    else:
        s["language_model.model.tok_embeddings.weight"] = r(vocab, h, scale=1.0)
        for i in range(t["layers"]):
            p = f"language_model.model.layers.{i}."
            s.update({p + "attention.wqkv.weight": r(h + 2 * kv, h), p + "attention.wo.weight": r(h, h),
                      p + "feed_forward.w1.weight": r(t["intermediate"], h),
                      p + "feed_forward.w3.weight": r(t["intermediate"], h),
                      p + "feed_forward.w2.weight": r(h, t["intermediate"]),
                      p + "attention_norm.weight": 1 + r(h), p + "ffn_norm.weight": 1 + r(h)})
        s["language_model.model.norm.weight"] = 1 + r(h)
        s["language_model.output.weight"] = r(vocab, h, scale=1.0)
    if heads:
        s["language_model.lm_regression_head.weight"] = r(1, h)
        s["language_model.lm_regression_head.bias"] = r(1)
        s["language_model.expert_head.weight"] = r(12, h)
        s["language_model.expert_head.bias"] = r(12)
    return s


def write_original_checkpoint(
    directory: Path, *, family: str = "qwen2", vision_layers: int = VISION["layers"], select_layer: int = -1,
    qk_norm: bool = False, norm_type: str = "layer_norm", heads: bool = False, side_files: bool = False,
    seed: int = 0, ps_version: str = "v2", tokenizer: str = "sentencepiece",
) -> dict[str, torch.Tensor]:
    """Write config.json + model.safetensors (+ tokenizer, + head side files) in the original layout.
    ``tokenizer`` (InternLM2 only): "sentencepiece" (tokenizer.model, as published) or "fast" (tokenizer.json)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    if family == "qwen2":
        vocab = write_qwen2_tokenizer(directory)
    elif tokenizer == "sentencepiece":
        vocab = write_internlm2_sentencepiece(directory)
    else:
        vocab = write_internlm2_tokenizer(directory)
    tensors = original_tensors(family, vocab, vision_layers=vision_layers, qk_norm=qk_norm, norm_type=norm_type,
                               heads=heads, seed=seed)
    config = {
        "_commit_hash": None, "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": VISION["image"],
        "llm_config": _llm_config(family, vocab), "max_dynamic_patch": 12, "min_dynamic_patch": 1,
        "model_type": "internvl_chat", "ps_version": ps_version, "select_layer": select_layer,
        "template": "Hermes-2" if family == "qwen2" else "internlm2-chat", "torch_dtype": "float32",
        "use_backbone_lora": 0, "use_llm_lora": 0, "use_thumbnail": True,
        "vision_config": _vision_config(layers=vision_layers, norm_type=norm_type, qk_norm=qk_norm),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    if side_files:
        torch.save({"weight": tensors["language_model.lm_regression_head.weight"],
                    "bias": tensors["language_model.lm_regression_head.bias"]}, directory / "regression_head.pth")
        torch.save({"weight": tensors["language_model.expert_head.weight"],
                    "bias": tensors["language_model.expert_head.bias"]}, directory / "expert_head.pth")
    return tensors


# --- the original computations, by hand -------------------------------------------------------------------------


def _norm(x, s, prefix, norm_type, eps=1e-6):
    if norm_type == "layer_norm":
        return F.layer_norm(x, (x.shape[-1],), s[prefix + ".weight"], s[prefix + ".bias"], eps)
    return _rms(x, s[prefix + ".weight"], eps)


def _rms(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def original_vision_embeddings(s, pixel_values):
    """InternVisionEmbeddings: conv patches, class token, position embedding (native size, no interpolation)."""
    patches = F.conv2d(pixel_values, s["vision_model.embeddings.patch_embedding.weight"],
                       s["vision_model.embeddings.patch_embedding.bias"], stride=VISION["patch"])  # (B, D, h, w)
    patches = patches.flatten(2).transpose(1, 2)  # (B, h*w, D)
    cls = s["vision_model.embeddings.class_embedding"].expand(patches.shape[0], -1, -1)
    return torch.cat([cls, patches], dim=1) + s["vision_model.embeddings.position_embedding"]


def original_vision_layer(s, x, i, *, norm_type="layer_norm", qk_norm=False):
    """InternVisionEncoderLayer: x + ls1 * attn(norm1(x)); then + ls2 * mlp(norm2(.)). Fused qkv split here."""
    p = f"vision_model.encoder.layers.{i}."
    b, n, d = x.shape
    heads = VISION["heads"]
    qkv = _norm(x, s, p + "norm1", norm_type) @ s[p + "attn.qkv.weight"].T + s[p + "attn.qkv.bias"]  # (B, N, 3D)
    qkv = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if qk_norm:  # InternRMSNorm over the full width, before the head split
        q = _rms(q.transpose(1, 2).flatten(-2), s[p + "attn.q_norm.weight"], 1e-6)
        k = _rms(k.transpose(1, 2).flatten(-2), s[p + "attn.k_norm.weight"], 1e-6)
        q = q.view(b, n, heads, -1).transpose(1, 2)
        k = k.view(b, n, heads, -1).transpose(1, 2)
    attn = torch.softmax((q * (d // heads) ** -0.5) @ k.transpose(-2, -1), dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, n, d)
    x = x + s[p + "ls1"] * (out @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"])
    hidden = F.gelu(_norm(x, s, p + "norm2", norm_type) @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"])
    return x + s[p + "ls2"] * (hidden @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"])


def original_pixel_shuffle_v2(x, scale=0.5):
    """InternVLChatModel.pixel_shuffle with ps_version 'v2': (N, W, H, C) -> (N, W*s, H*s, C/s^2)."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale), int(c / scale))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3).contiguous()


def original_image_features(s, pixel_values, *, select_layer=-1, vision_layers=VISION["layers"], **norm):
    """InternVLChatModel.extract_feature: tower, hidden_states[select_layer], drop CLS, pixel shuffle, mlp1."""
    x = original_vision_embeddings(s, pixel_values)
    hidden_states = [x]
    for i in range(vision_layers):
        x = original_vision_layer(s, x, i, **norm)
        hidden_states.append(x)
    feats = hidden_states[select_layer][:, 1:, :]
    side = int(feats.shape[1] ** 0.5)
    feats = original_pixel_shuffle_v2(feats.reshape(feats.shape[0], side, side, -1))
    feats = feats.reshape(feats.shape[0], -1, feats.shape[-1])
    feats = F.layer_norm(feats, (feats.shape[-1],), s["mlp1.0.weight"], s["mlp1.0.bias"])  # nn.LayerNorm eps 1e-5
    feats = F.gelu(feats @ s["mlp1.1.weight"].T + s["mlp1.1.bias"])
    return feats @ s["mlp1.3.weight"].T + s["mlp1.3.bias"]


def _rope(x, theta):
    t, hd = x.shape[-2], x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    half = torch.cat([-x[..., hd // 2:], x[..., : hd // 2]], dim=-1)
    return x * emb.cos() + half * emb.sin()


def original_lm_logits(s, family, input_ids):
    """The original language model's logits on a few tokens (causal, no image), from the original tensors.
    InternLM2's wqkv is read as its modeling code does: (kv_heads, groups + 2, head_dim) per output row."""
    t = TEXT
    h, heads, kvh = t["hidden"], t["heads"], t["kv_heads"]
    hd, groups = h // heads, heads // kvh
    internlm2 = family == "internlm2"
    eps = 1e-5 if internlm2 else 1e-6
    theta = 1000000.0
    x = s["language_model.model." + ("tok_embeddings" if internlm2 else "embed_tokens") + ".weight"][input_ids]
    b, n, _ = x.shape
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(t["layers"]):
        p = f"language_model.model.layers.{i}."
        y = _rms(x, s[p + ("attention_norm" if internlm2 else "input_layernorm") + ".weight"], eps)
        if internlm2:
            qkv = (y @ s[p + "attention.wqkv.weight"].T).view(b, n, kvh, groups + 2, hd)
            q = qkv[..., :groups, :].reshape(b, n, heads, hd)
            k, v = qkv[..., -2, :], qkv[..., -1, :]  # (B, T, kv, hd)
        else:
            q = (y @ s[p + "self_attn.q_proj.weight"].T + s[p + "self_attn.q_proj.bias"]).view(b, n, heads, hd)
            k = (y @ s[p + "self_attn.k_proj.weight"].T + s[p + "self_attn.k_proj.bias"]).view(b, n, kvh, hd)
            v = (y @ s[p + "self_attn.v_proj.weight"].T + s[p + "self_attn.v_proj.bias"]).view(b, n, kvh, hd)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, heads, T, hd)
        q, k = _rope(q, theta), _rope(k, theta)
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd) + mask, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, h)
        x = x + out @ s[p + ("attention.wo" if internlm2 else "self_attn.o_proj") + ".weight"].T
        y = _rms(x, s[p + ("ffn_norm" if internlm2 else "post_attention_layernorm") + ".weight"], eps)
        if internlm2:
            gate, up, down = (s[p + f"feed_forward.{w}.weight"] for w in ("w1", "w3", "w2"))
        else:
            gate, up, down = (s[p + f"mlp.{w}_proj.weight"] for w in ("gate", "up", "down"))
        x = x + (F.silu(y @ gate.T) * (y @ up.T)) @ down.T
    x = _rms(x, s["language_model.model.norm.weight"], eps)
    return x @ s["language_model." + ("output" if internlm2 else "lm_head") + ".weight"].T
