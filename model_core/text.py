"""Token sequences: the chat layout, the image placeholder, answer labels and where the heads read.

Layout (InternVL2 / Qwen2 "chatml" turns; the image placeholder is ``<img>`` + ``<IMG_CONTEXT>`` x n + ``</img>``
with one context token per vision feature, replaced inside the backbone by the projected image features)::

    <|im_start|>user\\n<img><IMG_CONTEXT>...</img>\\n{overall prompt}<|im_end|>\\n<|im_start|>assistant\\n
    The aesthetics of the human image is| {level}<|im_end|>\\n                          ^ heads read here
    [expert records only:]
    <|im_start|>user\\n{expert prompt}<|im_end|>\\n<|im_start|>assistant\\n{12 answer lines}<|im_end|>\\n

Why two turns for expert records: at inference the three heads read ONE prefill of the overall prompt plus the
answer prefix. Training the heads on exactly that context (the causal mask makes the hidden state at the prefix
independent of everything after it) means the expert head sees the same context at training and at inference,
and the 12-line expert answer is still trained with its own "... from 12 different dimensions" prompt, in the
same forward pass. At inference the sequence ends at the prefix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from model_core.standard import (
    ANSWER_PREFIX, EXPERT_PROMPTS, LEVELS, OVERALL_PROMPTS, expert_answer, pick_prompt, score_to_level,
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


@dataclass(frozen=True)
class ChatFormat:
    """The role markers; the defaults are InternVL2's (Qwen2 chatml). ``system_prompt`` empty = no system turn."""

    system_prompt: str = ""
    inference_prompt: str = OVERALL_PROMPTS[0]


class PromptBuilder:
    """Turns (image token count, record) into input ids, answer labels and the head position.

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
        self._user_head = self._system() + [self.im_start] + self._text("user\n")
        self._turn_end = [self.im_end] + self._text("\n")
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

    def _system(self) -> list[int]:
        if not self.chat.system_prompt:
            return []
        return [self.im_start] + self._text(f"system\n{self.chat.system_prompt}") + [self.im_end] + self._text("\n")

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
    ) -> tuple[list[int], list[int], int]:
        """(input_ids, labels, head_index). ``labels`` equals input ids on answer tokens, -100 elsewhere."""
        prompt = (pick_prompt(is_expert=False, seed=self.seed, record_index=index) if train
                  else self.chat.inference_prompt)
        ids = (self._user_head + [self.img_start] + [self.image_token_id] * n_image_tokens + [self.img_end]
               + self._text("\n" + prompt) + self._turn_end + self._assistant)
        labels = [-100] * len(ids)
        ids += self._prefix
        labels += self._prefix
        head_index = len(ids) - 1
        if not train:
            return ids, labels, head_index
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
        return ids, labels, head_index
