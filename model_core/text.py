"""Token sequences: the chat layout, the image placeholder, answer labels and where the heads read.

The image placeholder is ``<img>`` + ``<IMG_CONTEXT>`` x n + ``</img>`` with one context token per vision feature,
replaced inside the backbone by the projected image features. Two recipes (``ChatFormat.recipe``, saved with the
model config so that scoring uses the layout the model was trained with):

``platform`` (ours; InternVL2 / Qwen2 "chatml" turns, no system turn)::

    <|im_start|>user\\n<img><IMG_CONTEXT>...</img>\\n{overall prompt}<|im_end|>\\n<|im_start|>assistant\\n
    The aesthetics of the human image is| {level}<|im_end|>\\n                        ^ all heads read here
    [expert records only:]
    <|im_start|>user\\n{expert prompt}<|im_end|>\\n<|im_start|>assistant\\n{12 answer lines}<|im_end|>\\n

  Why two turns for expert records: at inference the three heads read ONE prefill of the overall prompt plus the
  answer prefix. Training the heads on exactly that context (the causal mask makes the hidden state at the prefix
  independent of everything after it) means the expert head sees the same context at training and at inference,
  and the 12-line expert answer is still trained with its own "... from 12 different dimensions" prompt, in the
  same forward pass.

``reference`` (the HumanAesExpert reference trainer: ms-swift's ``InternvlTemplate`` with its system turn, no
newline between turns, its image tag ``<img>...</img>\\n`` followed by the ``\\n`` of ``"<image>\\n" + prompt``,
one turn per record, labels on the answer and the closing ``<|im_end|>``)::

    [<bos> if the tokenizer adds one]<|im_start|>system\\n{system prompt}<|im_end|>
    <|im_start|>user\\n<img><IMG_CONTEXT>...</img>\\n\\n{prompt}<|im_end|><|im_start|>assistant\\n|
                                             regression and expert heads read here ^
    overall records: The aesthetics of the human image is| {level}<|im_end|>
                                       LM head reads here ^
    expert records:  {12 answer lines}<|im_end|>     (the prompt is one of the expert prompts)

  The regression and expert heads read the last token before the answer: the one position that exists in both
  kinds of record and sees the whole question but none of the answer. The LM head reads the level distribution
  after the answer prefix, where the overall answer's level word is trained. At inference the sequence is the
  overall layout cut after the answer prefix, so one prefill still gives all three heads; unlike the reference's
  two-pass MetaVoter the expert head then reads a context with the overall question, not an expert one.

At inference the sequence ends at the answer prefix, for both recipes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from model_core.standard import (
    ANSWER_PREFIX,
    EXPERT_PROMPTS,
    LEVELS,
    OVERALL_PROMPTS,
    PLATFORM_RECIPE,
    RECIPES,
    REFERENCE_EXPERT_PROMPTS,
    REFERENCE_INFERENCE_PROMPT,
    REFERENCE_OVERALL_PROMPTS,
    REFERENCE_RECIPE,
    REFERENCE_SYSTEM_PROMPT,
    expert_answer,
    pick_prompt,
    score_to_level,
)

logger = logging.getLogger(__name__)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
PAD = "<pad>"
UNK = "<unk>"
SPECIAL_TOKENS = (PAD, UNK, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT)


def _corpus() -> list[str]:
    """Every text the tiny tokenizer must spell: prompts, answers, role names, dimension names, digits."""
    from model_core.standard import DIMENSIONS

    texts = list(OVERALL_PROMPTS) + list(EXPERT_PROMPTS) + [ANSWER_PREFIX, "user", "assistant", "system"]
    texts += list(REFERENCE_OVERALL_PROMPTS) + list(REFERENCE_EXPERT_PROMPTS) + [REFERENCE_SYSTEM_PROMPT]
    texts += [f" {level}" for level in LEVELS]
    texts += [f"{d.index + 1}. {d.name} : " for d in DIMENSIONS]
    return texts


def build_tiny_tokenizer():
    """A word-level tokenizer over the prompt/answer vocabulary, built offline (no download).

    Each level word is one token, as the LM head needs. Returned as a ``PreTrainedTokenizerFast`` so that it
    saves and loads like any Hugging Face tokenizer.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()  # \w+|[^\w\s]+
    words = sorted({piece for text in _corpus() for piece, _ in pre.pre_tokenize_str(text)})
    vocab = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=UNK, pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT],
    )


class TokenizerError(ValueError):
    """The tokenizer lacks a token the model needs (level words must start with distinct tokens)."""


# What a training run starts from -> the recipe it uses unless told otherwise (see default_recipe_for).
SOURCE_KINDS: dict[str, str] = {
    "tiny": PLATFORM_RECIPE,  # the random-init backbone: ours gives the better expert PLCC on the learnability test
    "model_core": PLATFORM_RECIPE,  # one of our checkpoints: keep the recipe it was trained with (its config says)
    "internvl-hf": REFERENCE_RECIPE,  # an InternVL2 checkpoint in transformers' -hf layout
    "internvl2": REFERENCE_RECIPE,  # InternVL2 weights in their original layout, converted by `model_core convert`
    "humanaesexpert": REFERENCE_RECIPE,  # a released HumanAesExpert checkpoint, converted by `model_core convert`
}


def default_recipe_for(source_kind: str) -> str:
    """The recipe a training run uses by default, given what it starts from (one of :data:`SOURCE_KINDS`).

    InternVL2 and HumanAesExpert weights were fine-tuned with the reference layout, so training from them keeps
    it; the tiny backbone and our own checkpoints keep ours. A run that starts from one of our checkpoints
    (``init_checkpoint``) must use the recipe in that checkpoint's config, whatever this returns.
    """
    try:
        return SOURCE_KINDS[source_kind]
    except KeyError:
        raise ValueError(f"unknown source kind {source_kind!r}; expected one of {', '.join(SOURCE_KINDS)}") from None


@dataclass(frozen=True)
class ChatFormat:
    """The chat layout a model is trained and scored with; saved in every checkpoint's config.

    ``recipe``: "platform" (ours) or "reference" (the HumanAesExpert reference trainer's); a config written before
    recipes existed has none and loads as "platform". ``system_prompt``/``inference_prompt``: None takes the
    recipe's own (empty = no system turn for platform; InternvlTemplate's system text and the released models'
    question for reference); the resolved text is what gets saved, so a checkpoint does not depend on defaults.
    """

    recipe: str = PLATFORM_RECIPE
    system_prompt: str | None = None
    inference_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"chat.recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        reference = self.recipe == REFERENCE_RECIPE
        if self.system_prompt is None:
            object.__setattr__(self, "system_prompt", REFERENCE_SYSTEM_PROMPT if reference else "")
        if self.inference_prompt is None:
            object.__setattr__(self, "inference_prompt",
                               REFERENCE_INFERENCE_PROMPT if reference else OVERALL_PROMPTS[0])

    @property
    def is_reference(self) -> bool:
        return self.recipe == REFERENCE_RECIPE


class Encoded(NamedTuple):
    """One record as tokens. ``labels`` equals ``input_ids`` on answer tokens, -100 elsewhere."""

    input_ids: list[int]
    labels: list[int]
    head_index: int  # where the regression and expert heads read
    lm_index: int  # where the LM head reads the level distribution (after the answer prefix)


class PromptBuilder:
    """Turns (image token count, record) into input ids, answer labels and the head positions, per the chat format.

    Text pieces are tokenised separately and concatenated at special-token boundaries, so positions are exact
    and no character offsets are needed. Pure Python: runs in DataLoader workers.
    """

    def __init__(self, tokenizer, *, image_token_id: int, chat: ChatFormat, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.chat = chat
        self.seed = seed
        self.image_token_id = image_token_id
        self.im_start = self._special(IM_START)
        self.im_end = self._special(IM_END)
        self.img_start = self._special(IMG_START)
        self.img_end = self._special(IMG_END)
        context_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
        if context_id != image_token_id:
            raise TokenizerError(f"tokenizer's {IMG_CONTEXT} id {context_id} differs from the model's "
                                 f"image_token_id {image_token_id}")
        self.level_token_ids = self._level_tokens()
        # Cached pieces: the parts that do not depend on the record.
        # The reference template closes a turn with <|im_end|> alone; ours (Qwen2 chatml) adds a newline.
        self._turn_end = [self.im_end] + ([] if chat.is_reference else self._text("\n"))
        self._user_head = self._bos() + self._system() + [self.im_start] + self._text("user\n")
        self._assistant = [self.im_start] + self._text("assistant\n")
        self._prefix = self._text(ANSWER_PREFIX)
        self._levels = {level: self._text(f" {level}") for level in LEVELS}
        if not self._prefix:
            raise TokenizerError("the answer prefix tokenises to nothing")

    def _special(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise TokenizerError(f"tokenizer has no {token!r} token")
        return int(token_id)

    def _text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _bos(self) -> list[int]:
        # ms-swift's auto_add_bos: a BOS token only when the tokenizer itself adds one to every text (InternLM2's
        # tokenizer does, Qwen2's and the tiny one do not).
        bos = self.tokenizer.bos_token_id
        if not self.chat.is_reference or bos is None or bos not in self.tokenizer.encode(""):
            return []
        return [int(bos)]

    def _system(self) -> list[int]:
        if not self.chat.system_prompt:
            return []
        return [self.im_start] + self._text(f"system\n{self.chat.system_prompt}") + self._turn_end

    def _level_tokens(self) -> list[int]:
        first = []
        for level in LEVELS:
            ids = self._text(f" {level}")
            if not ids or ids[0] == self.tokenizer.unk_token_id:
                raise TokenizerError(f"tokenizer cannot spell the level word {level!r}")
            if len(ids) > 1:
                logger.warning("level word %r is %d tokens; the LM head uses the first", level, len(ids))
            first.append(int(ids[0]))
        if len(set(first)) != len(first):
            raise TokenizerError(f"level words must start with distinct tokens, got {dict(zip(LEVELS, first))}")
        return first

    def encode(
        self, *, n_image_tokens: int, is_expert: bool, scores: Sequence[float], index: int, train: bool
    ) -> Encoded:
        """The record's tokens, labels and head positions; at inference (``train=False``) the overall question of
        the chat format cut after the answer prefix."""
        if self.chat.is_reference:
            return self._encode_reference(n_image_tokens=n_image_tokens, is_expert=is_expert and train,
                                          scores=scores, index=index, train=train)
        prompt = (pick_prompt(is_expert=False, seed=self.seed, record_index=index) if train
                  else self.chat.inference_prompt)
        ids = (self._user_head + self._image(n_image_tokens) + self._text("\n" + prompt) + self._turn_end
               + self._assistant)
        labels = [-100] * len(ids)
        ids += self._prefix
        labels += self._prefix
        head_index = len(ids) - 1
        if not train:
            return Encoded(ids, labels, head_index, head_index)
        answer = self._levels[score_to_level(scores[-1])] + self._turn_end
        ids += answer
        labels += answer
        if is_expert:
            expert_prompt = pick_prompt(is_expert=True, seed=self.seed, record_index=index)
            turn = [self.im_start] + self._text("user\n" + expert_prompt) + self._turn_end + self._assistant
            ids += turn
            labels += [-100] * len(turn)
            answer = self._text(expert_answer(scores)) + self._turn_end
            ids += answer
            labels += answer
        return Encoded(ids, labels, head_index, head_index)

    def _image(self, n_image_tokens: int) -> list[int]:
        return [self.img_start] + [self.image_token_id] * n_image_tokens + [self.img_end]

    def _encode_reference(
        self, *, n_image_tokens: int, is_expert: bool, scores: Sequence[float], index: int, train: bool
    ) -> Encoded:
        prompt = (pick_prompt(is_expert=is_expert, seed=self.seed, record_index=index, recipe=REFERENCE_RECIPE)
                  if train else self.chat.inference_prompt)
        # "</img>\n" is the template's image tag, the second "\n" the one of the reference's "<image>\n" + prompt.
        ids = (self._user_head + self._image(n_image_tokens) + self._text("\n\n" + prompt) + self._turn_end
               + self._assistant)
        labels = [-100] * len(ids)
        head_index = len(ids) - 1
        if is_expert:
            answer = self._text(expert_answer(scores)) + [self.im_end]
            return Encoded(ids + answer, labels + answer, head_index, head_index)
        ids += self._prefix
        labels += self._prefix
        lm_index = len(ids) - 1
        if not train:
            return Encoded(ids, labels, head_index, lm_index)
        answer = self._levels[score_to_level(scores[-1])] + [self.im_end]
        return Encoded(ids + answer, labels + answer, head_index, lm_index)
