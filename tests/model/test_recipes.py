"""Training recipes: the reference layout token by token, prompts from the right lists, old configs, and that
scoring reads the layout the model was trained with."""

from __future__ import annotations

import json

import pytest
import torch

from model_core.model import ModelConfig, ModelLoadError, build_model, load_model, save_model
from model_core.scoring import score_images
from model_core.standard import (
    ANSWER_PREFIX,
    EXPERT_PROMPTS,
    OVERALL_PROMPTS,
    REFERENCE_EXPERT_PROMPTS,
    REFERENCE_INFERENCE_PROMPT,
    REFERENCE_OVERALL_PROMPTS,
    REFERENCE_SYSTEM_PROMPT,
    expert_answer,
    pick_prompt,
)
from model_core.synthetic import generate_image
from model_core.text import (
    IM_END,
    IM_START,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    ChatFormat,
    PromptBuilder,
    build_tiny_tokenizer,
    default_recipe_for,
)

N_IMAGE_TOKENS = 4
EXPERT_SCORES = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 0.5, 0.7]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _builder(tokenizer, recipe: str, **chat) -> PromptBuilder:
    return PromptBuilder(tokenizer, image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
                         chat=ChatFormat(recipe=recipe, **chat))


def _pieces(tokenizer):
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in (IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT)}

    def text(s: str) -> list[int]:
        return tokenizer.encode(s, add_special_tokens=False)

    return special, text


def _reference_question(tokenizer, prompt: str) -> list[int]:
    """The reference trainer's sequence up to the answer, written out piece by piece (ms-swift InternvlTemplate)."""
    sp, text = _pieces(tokenizer)
    return ([sp[IM_START]] + text("system\n" + REFERENCE_SYSTEM_PROMPT) + [sp[IM_END]]
            + [sp[IM_START]] + text("user\n") + [sp[IMG_START]] + [sp[IMG_CONTEXT]] * N_IMAGE_TOKENS + [sp[IMG_END]]
            + text("\n\n" + prompt) + [sp[IM_END]] + [sp[IM_START]] + text("assistant\n"))


def test_reference_overall_record_token_layout(tokenizer):
    builder = _builder(tokenizer, "reference")
    sp, text = _pieces(tokenizer)
    enc = builder.encode(n_image_tokens=N_IMAGE_TOKENS, is_expert=False, scores=[0.0] * 11 + [0.7], index=3,
                         train=True)
    prompt = pick_prompt(is_expert=False, seed=0, record_index=3, recipe="reference")
    question = _reference_question(tokenizer, prompt)
    answer = text(ANSWER_PREFIX) + text(" good") + [sp[IM_END]]
    assert enc.input_ids == question + answer
    assert enc.labels == [-100] * len(question) + answer  # labels on the answer and its closing <|im_end|> only
    assert enc.input_ids[:2] == [sp[IM_START]] + text("system")  # the system turn comes first
    assert enc.input_ids.count(sp[IM_START]) == 3  # system, user, assistant: one turn
    assert enc.head_index == len(question) - 1  # regression/expert heads: last token before the answer
    assert enc.lm_index == len(question) + len(text(ANSWER_PREFIX)) - 1  # LM head: last answer-prefix token
    assert tokenizer.unk_token_id not in enc.input_ids


def test_reference_expert_record_is_one_turn_with_an_expert_prompt(tokenizer):
    builder = _builder(tokenizer, "reference")
    sp, text = _pieces(tokenizer)
    enc = builder.encode(n_image_tokens=N_IMAGE_TOKENS, is_expert=True, scores=EXPERT_SCORES, index=5, train=True)
    prompt = pick_prompt(is_expert=True, seed=0, record_index=5, recipe="reference")
    assert prompt in REFERENCE_EXPERT_PROMPTS
    question = _reference_question(tokenizer, prompt)
    answer = text(expert_answer(EXPERT_SCORES)) + [sp[IM_END]]
    assert enc.input_ids == question + answer
    assert enc.labels == [-100] * len(question) + answer
    assert enc.input_ids.count(sp[IM_START]) == 3  # no second user turn
    assert enc.head_index == enc.lm_index == len(question) - 1
    assert tokenizer.unk_token_id not in enc.input_ids


def test_platform_expert_record_keeps_its_two_turns_and_no_system_turn(tokenizer):
    builder = _builder(tokenizer, "platform")
    sp, _ = _pieces(tokenizer)
    enc = builder.encode(n_image_tokens=N_IMAGE_TOKENS, is_expert=True, scores=EXPERT_SCORES, index=5, train=True)
    assert enc.input_ids[0] == sp[IM_START] and enc.input_ids.count(sp[IM_START]) == 4  # user, assistant x 2
    assert enc.head_index == enc.lm_index


def test_prompts_are_drawn_reproducibly_and_only_from_the_recipe_lists():
    for recipe, overall, expert in (("reference", REFERENCE_OVERALL_PROMPTS, REFERENCE_EXPERT_PROMPTS),
                                    ("platform", OVERALL_PROMPTS, EXPERT_PROMPTS)):
        for is_expert, allowed in ((False, overall), (True, expert)):
            drawn = [pick_prompt(is_expert=is_expert, seed=7, record_index=i, recipe=recipe) for i in range(200)]
            assert set(drawn) == set(allowed)  # every prompt of the list, nothing else
            assert drawn == [pick_prompt(is_expert=is_expert, seed=7, record_index=i, recipe=recipe)
                             for i in range(200)]
            assert drawn != [pick_prompt(is_expert=is_expert, seed=8, record_index=i, recipe=recipe)
                             for i in range(200)]
    # The reference lists are the reference's: five of each, the expert ones the overall ones "from 12 dimensions".
    assert len(REFERENCE_OVERALL_PROMPTS) == len(REFERENCE_EXPERT_PROMPTS) == 5
    for overall, expert in zip(REFERENCE_OVERALL_PROMPTS, REFERENCE_EXPERT_PROMPTS):
        assert expert == overall[:-1] + " from 12 different dimensions" + overall[-1]
    assert REFERENCE_INFERENCE_PROMPT == "Rate the aesthetics of this human picture."


def test_a_training_batch_uses_only_reference_prompts(tokenizer):
    builder = _builder(tokenizer, "reference")
    _, text = _pieces(tokenizer)
    allowed = {tuple(text("\n\n" + p)) for p in REFERENCE_OVERALL_PROMPTS + REFERENCE_EXPERT_PROMPTS}
    for index in range(40):
        is_expert = index % 2 == 1
        enc = builder.encode(n_image_tokens=N_IMAGE_TOKENS, is_expert=is_expert, scores=EXPERT_SCORES, index=index,
                             train=True)
        start = enc.input_ids.index(tokenizer.convert_tokens_to_ids(IMG_END)) + 1
        end = enc.input_ids.index(tokenizer.convert_tokens_to_ids(IM_END), start)
        assert tuple(enc.input_ids[start:end]) in allowed


@pytest.mark.parametrize("recipe", ["platform", "reference"])
def test_inference_layout_is_the_training_layout_cut_after_the_answer_prefix(tokenizer, recipe):
    train_prompt = pick_prompt(is_expert=False, seed=0, record_index=11, recipe=recipe)
    builder = _builder(tokenizer, recipe, inference_prompt=train_prompt)
    trained = builder.encode(n_image_tokens=N_IMAGE_TOKENS, is_expert=False, scores=[0.0] * 11 + [0.3], index=11,
                             train=True)
    for is_expert in (False, True):  # at inference every image gets the overall question
        scored = builder.encode(n_image_tokens=N_IMAGE_TOKENS, is_expert=is_expert, scores=[0.0] * 12, index=0,
                                train=False)
        assert scored.input_ids == trained.input_ids[:len(scored.input_ids)]
        assert (scored.head_index, scored.lm_index) == (trained.head_index, trained.lm_index)
        assert scored.lm_index == len(scored.input_ids) - 1


def test_recipe_defaults_and_saved_text():
    platform, reference = ChatFormat(), ChatFormat(recipe="reference")
    assert (platform.recipe, platform.system_prompt, platform.inference_prompt) == ("platform", "", OVERALL_PROMPTS[0])
    assert (reference.system_prompt, reference.inference_prompt) == (REFERENCE_SYSTEM_PROMPT,
                                                                     REFERENCE_INFERENCE_PROMPT)
    saved = ModelConfig(chat=reference).to_dict()["chat"]
    assert saved == {"recipe": "reference", "system_prompt": REFERENCE_SYSTEM_PROMPT,
                     "inference_prompt": REFERENCE_INFERENCE_PROMPT}
    with pytest.raises(ValueError, match="chat.recipe must be one of platform, reference"):
        ChatFormat(recipe="swift")
    assert [default_recipe_for(k) for k in ("tiny", "model_core", "internvl-hf", "internvl2", "humanaesexpert")] == [
        "platform", "platform", "reference", "reference", "reference"]
    with pytest.raises(ValueError, match="unknown source kind"):
        default_recipe_for("gguf")


def test_config_written_before_recipes_loads_as_platform(tmp_path, tiny_config):
    model = build_model(tiny_config)
    save_model(model, tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    payload = json.loads(path.read_text())
    payload["model"]["chat"] = {"system_prompt": "", "inference_prompt": OVERALL_PROMPTS[0]}  # the old shape
    path.write_text(json.dumps(payload))
    loaded = load_model(tmp_path / "old", expect_config=tiny_config)
    assert loaded.config.chat == ChatFormat() and loaded.config.chat.recipe == "platform"

    payload["model"]["chat"]["recipe"] = "swift"
    path.write_text(json.dumps(payload))
    with pytest.raises(ModelLoadError, match="chat.recipe must be one of"):
        load_model(tmp_path / "old")


def test_reference_checkpoint_scores_with_the_layout_it_was_trained_with(tmp_path):
    config = ModelConfig(train_vision=True, head_dropout=0.0, chat=ChatFormat(recipe="reference"))
    model = build_model(config)
    image, _ = generate_image(seed=100, size=(64, 64))
    image.save(tmp_path / "a.png")
    before = score_images(model, [tmp_path / "a.png"], max_tiles=1)[0]
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt", expect_config=config)
    assert loaded.config.chat.recipe == "reference"
    after = score_images(loaded, [tmp_path / "a.png"], max_tiles=1)[0]
    assert after.metavoter_score == pytest.approx(before.metavoter_score, abs=1e-6)

    # One prefill, two read positions: the LM head sees the answer prefix, the other heads do not.
    enc = loaded.prompts.encode(n_image_tokens=loaded.tokens_per_tile, is_expert=False, scores=[0.0] * 12, index=0,
                                train=False)
    assert enc.input_ids[0] == loaded.tokenizer.convert_tokens_to_ids(IM_START)
    assert enc.lm_index - enc.head_index == len(loaded.tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False))
    with torch.no_grad():
        ids = torch.tensor([enc.input_ids])
        pixels = torch.zeros(1, 3, loaded.tile_size, loaded.tile_size)
        common = dict(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids),
                      head_index=torch.tensor([enc.head_index]))
        split = loaded(**common, lm_index=torch.tensor([enc.lm_index]))
        same = loaded(**common)
    assert torch.equal(split.regression, same.regression) and torch.equal(split.expert, same.expert)
    assert not torch.allclose(split.level_probs, same.level_probs)


def test_cli_train_chooses_the_recipe_from_what_it_starts_from(tmp_path):
    from model_core.cli import _model_config, build_parser

    def config(*extra: str) -> ModelConfig:
        return _model_config(build_parser().parse_args(["train", "--data", "d", "--output", "o", *extra]))

    assert config().chat.recipe == "platform"  # the tiny backbone
    assert config("--backbone", str(tmp_path)).chat.recipe == "reference"  # InternVL2 weights
    assert config("--backbone", str(tmp_path), "--recipe", "platform").chat.recipe == "platform"
    save_model(build_model(ModelConfig(chat=ChatFormat(recipe="reference"))), tmp_path / "ours")
    assert config("--init-checkpoint", str(tmp_path / "ours")).chat.recipe == "reference"  # the checkpoint's own


def test_the_training_seed_draws_the_prompts(tiny_model):
    def prompts(seed: int) -> list[list[int]]:
        encode = tiny_model.collator(train=True, seed=seed).encode
        return [encode(n_image_tokens=1, is_expert=False, scores=[0.5] * 12, index=i, train=True).input_ids
                for i in range(30)]

    assert prompts(0) == prompts(0) and prompts(0) != prompts(1)
    assert tiny_model.prompts.seed == 0  # the model's own builder is left alone
