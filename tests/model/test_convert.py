"""`python -m model_core convert`: original InternVL2 / HumanAesExpert layout -> model_core checkpoint.

Every comparison is against a computation BY HAND from the ORIGINAL tensors (tests/model/internvl2_original.py),
never against the converter's own mapping.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_core.convert import ConversionError, convert_internvl2
from model_core.model import load_model, read_checkpoint_config
from tests.model.internvl2_original import (
    VISION,
    original_image_features,
    original_lm_logits,
    original_vision_embeddings,
    original_vision_layer,
    write_original_checkpoint,
)

# The two families as published: HumanAesExpert-1B (Qwen2, with its heads and their .pth side files) and an
# InternLM2 model (the 8B's language model) with an InternViT-6B-style tower (RMSNorm, qk normalisation) and a
# select_layer that is not the last, so that both tower variants and the layer cut are covered.
CASES = {
    "qwen2": dict(family="qwen2", heads=True, side_files=True, seed=1),
    "internlm2": dict(family="internlm2", qk_norm=True, norm_type="rms_norm", select_layer=-2, seed=2),
}


@pytest.fixture(scope="module", params=list(CASES))
def converted(request, tmp_path_factory):
    case = CASES[request.param]
    root = tmp_path_factory.mktemp(f"convert-{request.param}")
    tensors = write_original_checkpoint(root / "src", **case)
    report = convert_internvl2(root / "src", root / "out")
    model = load_model(root / "out", device="cpu", precision="fp32")
    return dict(case=case, tensors=tensors, report=report, model=model, out=root / "out", src=root / "src")


def test_every_source_tensor_is_consumed_or_named(converted):
    report, tensors = converted["report"], converted["tensors"]
    assert set(report.consumed) | set(report.dropped) == set(tensors)
    assert not set(report.consumed) & set(report.dropped)
    assert all(reason for reason in report.dropped.values())
    written = json.loads((converted["out"] / "conversion.json").read_text())
    assert set(written["consumed"]) | set(written["dropped"]) == set(tensors)
    if converted["case"].get("select_layer", -1) == -2:  # the last of the 3 tower layers is never read
        assert sorted({k.split(".")[3] for k in report.dropped}) == ["2"]
        assert all("select_layer" in reason for reason in report.dropped.values())
    else:
        assert report.dropped == {}


def test_output_is_a_model_core_checkpoint_on_the_converted_backbone(converted):
    out = converted["out"]
    payload = read_checkpoint_config(out)
    source = Path(payload["model"]["backbone"]["source"])
    assert source.is_absolute() and source == out.resolve() / "backbone"
    hf = json.loads((source / "config.json").read_text())
    assert hf["architectures"] == ["InternVLForConditionalGeneration"]
    assert hf["text_config"]["model_type"] == ("qwen2" if converted["case"]["family"] == "qwen2" else "llama")
    assert hf["vision_feature_layer"] == -1
    assert not list(out.parent.glob(".out.converting-*"))  # the temporary directory is gone
    assert payload["model"]["chat"]["recipe"] == "reference"  # InternVL2 weights train on with the reference layout


def test_special_tokens_line_up_with_the_image_token(converted):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted["out"] / "backbone"), local_files_only=True)
    backbone = converted["model"].backbone
    assert tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == backbone.config.image_token_id
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<img>", "</img>", "<|im_start|>", "<|im_end|>")]
    assert len(set(ids)) == 4 and all(i < backbone.config.text_config.vocab_size for i in ids)
    assert converted["report"].tokenizer["token_ids"]["<IMG_CONTEXT>"] == backbone.config.image_token_id


def test_internlm2_sentencepiece_model_becomes_an_equivalent_fast_tokenizer(tmp_path):
    """tokenizer.model (BPE, byte fallback, no dummy prefix) + added_tokens.json -> tokenizer.json, no
    sentencepiece package involved; the published ids of the added tokens are kept."""
    from transformers import AutoTokenizer

    write_original_checkpoint(tmp_path / "src", family="internlm2", tokenizer="sentencepiece")
    report = convert_internvl2(tmp_path / "src", tmp_path / "out")
    assert any("tokenizer.model" in change for change in report.tokenizer["changes"])
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "out" / "backbone"), local_files_only=True)
    added = json.loads((tmp_path / "src" / "added_tokens.json").read_text())
    assert all(tokenizer.convert_tokens_to_ids(token) == token_id for token, token_id in added.items())
    assert tokenizer.tokenize(" bad") == ["\u2581bad"] and tokenizer.tokenize(" excellent") == ["\u2581excellent"]
    ids = tokenizer.encode("Rate é<IMG_CONTEXT>", add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert "<0xC3>" in pieces and "<0xA9>" in pieces and pieces[-1] == "<IMG_CONTEXT>"  # byte fallback for é
    assert tokenizer.decode(ids) == "Rate é<IMG_CONTEXT>"
    assert tokenizer.encode("x")[0] == tokenizer.convert_tokens_to_ids("<s>")  # add_bos_token, as InternLM2
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") != tokenizer.unk_token_id


def test_a_remote_code_tokenizer_with_tokenizer_json_is_used_as_a_fast_tokenizer(tmp_path):
    write_original_checkpoint(tmp_path / "src", family="internlm2", tokenizer="fast")
    report = convert_internvl2(tmp_path / "src", tmp_path / "out")
    assert report.tokenizer["class"] == "PreTrainedTokenizerFast"
    assert "tokenizer_class InternLM2Tokenizer -> PreTrainedTokenizerFast (reads tokenizer.json)" in \
        report.tokenizer["changes"]
    (tmp_path / "src2").mkdir()
    write_original_checkpoint(tmp_path / "src2", family="internlm2", tokenizer="fast")
    (tmp_path / "src2" / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match="neither a tokenizer.json nor a tokenizer.model"):
        convert_internvl2(tmp_path / "src2", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def _pixels(n=2, seed=0):
    return torch.randn(n, 3, VISION["image"], VISION["image"], generator=torch.Generator().manual_seed(seed))


def test_vision_layer_pixel_shuffle_and_projector_match_the_original_by_hand(converted):
    tensors, case = converted["tensors"], converted["case"]
    norm = dict(norm_type=case.get("norm_type", "layer_norm"), qk_norm=case.get("qk_norm", False))
    tower = converted["model"].backbone.model.vision_tower
    pixels = _pixels()
    with torch.no_grad():
        embeddings, _ = tower.embeddings(pixels)
        expected_embeddings = original_vision_embeddings(tensors, pixels)
        torch.testing.assert_close(embeddings, expected_embeddings, atol=1e-5, rtol=1e-5)
        layer0 = tower.encoder.layer[0](embeddings)
        torch.testing.assert_close(layer0, original_vision_layer(tensors, expected_embeddings, 0, **norm),
                                   atol=1e-5, rtol=1e-5)
        features = converted["model"].backbone.model.get_image_features(pixel_values=pixels)
        expected = original_image_features(tensors, pixels, select_layer=case.get("select_layer", -1), **norm)
    assert features.shape == (2, (VISION["image"] // VISION["patch"] // 2) ** 2, 32)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_language_model_logits_match_the_original_by_hand(converted):
    ids = torch.tensor([[5, 17, 42, 3, 99, 7], [1, 2, 3, 4, 5, 6]])
    backbone = converted["model"].backbone
    with torch.no_grad():
        logits = backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        expected = original_lm_logits(converted["tensors"], converted["case"]["family"], ids)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)


def test_internlm2_wqkv_split_gives_the_original_q_k_v(tmp_path):
    """q/k/v of the converted Llama attention equal the original's grouped reading of the fused weight."""
    from model_core.convert import split_internlm2_wqkv

    heads, kv_heads, hd, hidden = 8, 2, 4, 16
    groups = heads // kv_heads
    fused = torch.randn(kv_heads * (groups + 2) * hd, hidden)
    x = torch.randn(3, hidden)
    # InternLM2Attention: rearrange(qkv, "b q (h gs d) -> b q h gs d"); q = [..., :gs], k = [..., -2], v = [..., -1]
    grouped = (x @ fused.T).view(3, kv_heads, groups + 2, hd)
    q_orig = grouped[:, :, :groups].reshape(3, heads * hd)
    k_orig, v_orig = grouped[:, :, -2].reshape(3, -1), grouped[:, :, -1].reshape(3, -1)
    q, k, v = split_internlm2_wqkv(fused, num_heads=heads, num_kv_heads=kv_heads, head_dim=hd)
    torch.testing.assert_close(x @ q.T, q_orig)
    torch.testing.assert_close(x @ k.T, k_orig)
    torch.testing.assert_close(x @ v.T, v_orig)
    with pytest.raises(ConversionError, match="wqkv"):
        split_internlm2_wqkv(fused[:-1], num_heads=heads, num_kv_heads=kv_heads, head_dim=hd)


def test_carried_linear_heads_give_the_reference_outputs(converted):
    model, tensors, report = converted["model"], converted["tensors"], converted["report"]
    hidden = torch.randn(4, 32, generator=torch.Generator().manual_seed(5))
    if not converted["case"].get("heads"):
        assert model.config.head_kind == "mlp"
        assert report.heads["regression"]["status"] == "re-initialised"
        assert report.heads["regression"]["reason"] == "absent from the source"
        return
    assert model.config.head_kind == "linear"
    assert report.heads["regression"]["status"] == report.heads["expert"]["status"] == "carried"
    with torch.no_grad():
        regression = model.regression_head(hidden).squeeze(-1)
        expert = model.expert_head(hidden)
    w, b = tensors["language_model.lm_regression_head.weight"], tensors["language_model.lm_regression_head.bias"]
    torch.testing.assert_close(regression, (hidden @ w.T + b).squeeze(-1))
    w, b = tensors["language_model.expert_head.weight"], tensors["language_model.expert_head.bias"]
    torch.testing.assert_close(expert, hidden @ w.T + b)
    assert any("identical to" in w for w in report.warnings)  # the .pth side files were checked


def test_linear_sigmoid_and_mlp_choices(tmp_path):
    tensors = write_original_checkpoint(tmp_path / "src", heads=True, seed=3)
    report = convert_internvl2(tmp_path / "src", tmp_path / "sig", linear_head_output="sigmoid", lora_r=0)
    model = load_model(tmp_path / "sig")
    assert model.config.head_kind == "linear_sigmoid" and model.config.lora is None
    hidden = torch.randn(3, 32)
    w, b = tensors["language_model.lm_regression_head.weight"], tensors["language_model.lm_regression_head.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model.regression_head(hidden), torch.sigmoid(hidden @ w.T + b))
    assert report.heads["output_transform"] == "sigmoid(Linear)"
    report = convert_internvl2(tmp_path / "src", tmp_path / "mlp", head_kind="mlp")
    assert report.heads["regression"]["status"] == "re-initialised"
    assert "mlp" in report.heads["regression"]["reason"]
    assert report.dropped["language_model.expert_head.weight"].startswith("HumanAesExpert expert head not carried")


def test_a_head_of_another_shape_is_reinitialised_and_said(tmp_path):
    from safetensors.torch import load_file, save_file

    write_original_checkpoint(tmp_path / "src", heads=True, seed=4)
    weights = load_file(str(tmp_path / "src" / "model.safetensors"))
    weights["language_model.expert_head.weight"] = torch.randn(10, 32)  # 10 outputs, the model needs 12
    weights["language_model.expert_head.bias"] = torch.randn(10)
    save_file(weights, str(tmp_path / "src" / "model.safetensors"))
    report = convert_internvl2(tmp_path / "src", tmp_path / "out")
    assert report.heads["regression"]["status"] == "carried"
    assert report.heads["expert"]["status"] == "re-initialised"
    assert "(10, 32)" in report.heads["expert"]["reason"] and "(12, 32)" in report.heads["expert"]["reason"]
    assert "language_model.expert_head.weight" in report.dropped
    written = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert written["heads"]["expert"]["status"] == "re-initialised"


def _edit_weights(directory: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(directory / "model.safetensors"))
    edit(weights)
    save_file(weights, str(directory / "model.safetensors"))


@pytest.mark.parametrize("breakage,message", [
    ("unknown_layout", "unknown layout"),
    ("hf_layout", "already in the transformers"),
    ("missing_tensor", "missing tensor"),
    ("extra_tensor", "no conversion rule explains"),
    ("extra_language_tensor", "has no place for, e.g. language_model.model.layers.0.self_attn.gate"),
    ("wrong_shape", "wrong shape"),
    ("ps_v1", "ps_version"),
    ("unsupported_llm", "not supported"),
])
def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, breakage, message):
    src = tmp_path / "src"
    write_original_checkpoint(src, ps_version="v1" if breakage == "ps_v1" else "v2")
    config = json.loads((src / "config.json").read_text())
    if breakage == "unknown_layout":
        config.pop("llm_config")
    elif breakage == "hf_layout":
        config = {"model_type": "internvl", "text_config": {}, "vision_config": {}}
    elif breakage == "unsupported_llm":
        config["llm_config"]["architectures"] = ["Phi3ForCausalLM"]
    (src / "config.json").write_text(json.dumps(config))
    if breakage == "missing_tensor":
        _edit_weights(src, lambda w: w.pop("language_model.model.layers.1.mlp.up_proj.weight"))
    elif breakage == "extra_tensor":
        _edit_weights(src, lambda w: w.update({"some_adapter.weight": torch.zeros(2)}))
    elif breakage == "extra_language_tensor":
        _edit_weights(src, lambda w: w.update({"language_model.model.layers.0.self_attn.gate.weight": torch.zeros(2)}))
    elif breakage == "wrong_shape":
        _edit_weights(src, lambda w: w.update({"mlp1.3.weight": torch.zeros(32, 31)}))
    with pytest.raises(ConversionError, match=message):
        convert_internvl2(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no temporary directory


def test_existing_output_is_refused(tmp_path):
    write_original_checkpoint(tmp_path / "src")
    (tmp_path / "out").mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        convert_internvl2(tmp_path / "src", tmp_path / "out")


def test_cli_convert_prints_the_report_and_errors_as_json(tmp_path, capsys):
    from model_core.cli import main

    write_original_checkpoint(tmp_path / "src", heads=True)
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--lora-r", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["llm_family"] == "qwen2" and summary["heads"]["head_kind"] == "linear"
    assert summary["consumed"] == summary["n_source_tensors"]
    assert read_checkpoint_config(tmp_path / "out")["model"]["lora"]["r"] == 4
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "ConversionError"


def test_train_runs_two_steps_from_the_converted_checkpoint(tmp_path, small_data, capsys):
    """`python -m model_core train --init-checkpoint OUT`: the converted model's structure is used as is."""
    from model_core.cli import main

    write_original_checkpoint(tmp_path / "src", heads=True, seed=6)
    convert_internvl2(tmp_path / "src", tmp_path / "out", lora_r=4)
    before = load_model(tmp_path / "out")
    capsys.readouterr()
    code = main(["train", "--data", str(small_data), "--output", str(tmp_path / "run"), "--init-checkpoint",
                 str(tmp_path / "out"), "--max-steps", "2", "--batch-size", "4", "--max-tiles", "1", "--device",
                 "cpu", "--precision", "fp32", "--num-workers", "0", "--checkpoint-every", "0", "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["steps"] == 2
    after = load_model(result["final_checkpoint"])
    assert after.config.head_kind == "linear" and after.config.lora.r == 4 and after.config.chat.recipe == "reference"
    assert not torch.equal(after.regression_head.proj.weight, before.regression_head.proj.weight)
    # the frozen backbone is the converted one, shared by reference (a delta checkpoint)
    assert after.config.backbone.source == before.config.backbone.source
    # a model keeps the layout it was trained with: another recipe is refused before any work
    code = main(["train", "--data", str(small_data), "--output", str(tmp_path / "run2"), "--init-checkpoint",
                 str(tmp_path / "out"), "--recipe", "platform", "--max-steps", "1", "--device", "cpu", "--quiet"])
    assert code == 2 and "reference" in json.loads(capsys.readouterr().out)["message"]
    assert not (tmp_path / "run2").exists()


def test_head_kind_defaults_to_mlp_for_existing_configs_and_is_validated():
    from model_core.model import ModelConfig, ScoreLinear, ScoreMLP, build_model

    config = ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k != "head_kind"})
    assert config.head_kind == "mlp"
    assert isinstance(build_model(ModelConfig(head_kind="linear")).expert_head, ScoreLinear)
    assert isinstance(build_model(config).expert_head, ScoreMLP)
    with pytest.raises(ValueError, match="head_kind"):
        build_model(ModelConfig(head_kind="conv"))
