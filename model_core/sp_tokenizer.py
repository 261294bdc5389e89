"""A sentencepiece BPE ``tokenizer.model`` (InternLM2's, as InternVL2-8B ships it) as a fast ``tokenizer.json``.

Neither ``sentencepiece`` nor ``protobuf`` is needed: the model file is a small protobuf message read here field by
field (pieces with their scores and types; the trainer's model type and byte fallback; the normalizer's dummy
prefix), and the fast tokenizer is assembled with ``tokenizers`` the way transformers' Llama converter does it:
BPE merges recovered from the vocabulary (a merge for every piece whose two halves are pieces, ordered by the
merged piece's score), byte fallback, ``▁`` for spaces, a leading ``▁`` only when the model adds a dummy prefix,
control/unknown pieces as special tokens, user-defined pieces as added tokens, and the checkpoint's extra added
tokens (``<img>``, ``</img>``, ``<IMG_CONTEXT>``, ...) at exactly their published ids.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


class SentencePieceError(ValueError):
    """A tokenizer.model this reader cannot turn into an equivalent fast tokenizer."""


@dataclass
class SentencePieceModel:
    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    model_type: str = "unigram"
    byte_fallback: bool = False
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise SentencePieceError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; value is int (varint/fixed) or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise SentencePieceError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def read_model(path: str | Path) -> SentencePieceModel:
    """Parse a sentencepiece ``ModelProto``: pieces (1), trainer_spec (2), normalizer_spec (3)."""
    data = Path(path).read_bytes()
    model = SentencePieceModel()
    try:
        for number, wire, value in _fields(data):
            if number == 1 and wire == 2:
                piece, score, kind = "", 0.0, NORMAL
                for n, w, v in _fields(value):
                    if n == 1 and w == 2:
                        piece = v.decode("utf-8")
                    elif n == 2 and w == 5:
                        score = struct.unpack("<f", v)[0]
                    elif n == 3 and w == 0:
                        kind = v
                model.pieces.append((piece, score, kind))
            elif number == 2 and wire == 2:
                for n, w, v in _fields(value):
                    if n == 3 and w == 0:
                        model.model_type = MODEL_TYPES.get(v, str(v))
                    elif n == 35 and w == 0:
                        model.byte_fallback = bool(v)
            elif number == 3 and wire == 2:
                for n, w, v in _fields(value):
                    if n == 3 and w == 0:
                        model.add_dummy_prefix = bool(v)
                    elif n == 4 and w == 0:
                        model.remove_extra_whitespaces = bool(v)
    except (UnicodeDecodeError, struct.error) as exc:
        raise SentencePieceError(f"{path}: not a sentencepiece model ({exc})") from None
    if not model.pieces:
        raise SentencePieceError(f"{path}: no pieces; not a sentencepiece model")
    return model


def write_model(path: str | Path, model: SentencePieceModel) -> None:
    """The inverse of :func:`read_model` for the fields it reads (tests build tiny models with it)."""

    def key(number: int, wire: int) -> bytes:
        return _encode_varint(number << 3 | wire)

    def message(number: int, payload: bytes) -> bytes:
        return key(number, 2) + _encode_varint(len(payload)) + payload

    out = b""
    for piece, score, kind in model.pieces:
        raw = piece.encode("utf-8")
        body = key(1, 2) + _encode_varint(len(raw)) + raw + key(2, 5) + struct.pack("<f", score)
        body += key(3, 0) + _encode_varint(kind)
        out += message(1, body)
    model_type = {v: k for k, v in MODEL_TYPES.items()}[model.model_type]
    out += message(2, key(3, 0) + _encode_varint(model_type) + key(35, 0) + _encode_varint(int(model.byte_fallback)))
    out += message(3, key(3, 0) + _encode_varint(int(model.add_dummy_prefix))
                   + key(4, 0) + _encode_varint(int(model.remove_extra_whitespaces)))
    Path(path).write_bytes(out)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def build_fast_tokenizer(model: SentencePieceModel, added: dict[int, str], *, add_bos: bool, bos: str | None):
    """A ``tokenizers.Tokenizer`` equivalent to the BPE sentencepiece ``model`` plus ``added`` {id: token}."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    if model.model_type != "bpe":
        raise SentencePieceError(f"sentencepiece model type {model.model_type!r}: only BPE models (InternLM2's) are "
                                 "converted here")
    vocab = {piece: i for i, (piece, _, _) in enumerate(model.pieces)}
    if len(vocab) != len(model.pieces):
        raise SentencePieceError("duplicate pieces in the sentencepiece model")
    scored = sorted(((p, s) for p, s, _ in model.pieces), key=lambda item: -item[1])
    merges = []
    for merged, _score in scored:
        local = [(merged[:i], merged[i:]) for i in range(1, len(merged)) if merged[:i] in vocab and merged[i:] in vocab]
        merges.extend(sorted(local, key=lambda pair: (vocab[pair[0]], vocab[pair[1]])))
    unk = next((p for p, _, kind in model.pieces if kind == UNKNOWN), None)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                                     byte_fallback=model.byte_fallback))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if model.add_dummy_prefix else "never", split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if model.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tokenizer.decoder = decoders.Sequence(steps)
    specials = [AddedToken(p, normalized=False, special=True) for p, _, k in model.pieces if k in (UNKNOWN, CONTROL)]
    tokenizer.add_special_tokens(specials)
    tokenizer.add_tokens([AddedToken(p, normalized=False, special=False)
                          for p, _, k in model.pieces if k == USER_DEFINED])
    for token_id in sorted(added):
        token = added[token_id]
        if token in vocab:
            if vocab[token] != token_id:
                raise SentencePieceError(f"added token {token!r} has id {token_id} but is piece {vocab[token]}")
            continue
        if token_id != tokenizer.get_vocab_size(with_added_tokens=True):
            raise SentencePieceError(f"added token {token!r} at id {token_id} does not follow the vocabulary "
                                     f"({tokenizer.get_vocab_size(with_added_tokens=True)} tokens)")
        tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True)])
    if add_bos and bos in vocab:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    return tokenizer


def convert_directory(directory: Path) -> list[str]:
    """Write ``tokenizer.json`` next to ``tokenizer.model`` and point tokenizer_config.json at it. Returns what
    changed, for the conversion report."""
    tok_config_path = directory / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text()) if tok_config_path.is_file() else {}
    added: dict[int, str] = {}
    added_json = directory / "added_tokens.json"
    if added_json.is_file():
        added.update({int(i): t for t, i in json.loads(added_json.read_text()).items()})
    for token_id, spec in (tok_config.get("added_tokens_decoder") or {}).items():
        added[int(token_id)] = spec["content"] if isinstance(spec, dict) else str(spec)
    model = read_model(directory / "tokenizer.model")
    bos = tok_config.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    tokenizer = build_fast_tokenizer(model, added, add_bos=bool(tok_config.get("add_bos_token", True)), bos=bos)
    tokenizer.save(str(directory / "tokenizer.json"))
    return [f"tokenizer.model (sentencepiece BPE, {len(model.pieces)} pieces, byte_fallback={model.byte_fallback}, "
            f"add_dummy_prefix={model.add_dummy_prefix}) -> tokenizer.json"]
