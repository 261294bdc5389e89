"""The files the platform reads and writes: the HumanBeauty layout and the ms-swift training jsonl.

The one place that knows them (compatible with the reference HumanAesExpert code field for
field). The platform's importer and exporter, the trainer's readers and the synthetic data set all go through
here; no other module spells a folder name, a file name or a record's keys.

HumanBeauty layout::

    <root>/HumanBeauty-58K/images/<file>   <root>/HumanBeauty-58K/label.jsonl   (overall-only: one score)
    <root>/HumanBeauty-50K/images/<file>   <root>/HumanBeauty-50K/label.jsonl   (expert: 12 scores)
    <root>/train_label.jsonl               <root>/test_label.jsonl

- a ``label.jsonl`` record: ``image_name`` (a file name inside that folder's ``images/``), ``source``, ``score``
  (58K: one float, then ``text_level``, the level word of the score; 50K: the 12 floats in the standard's order);
- a ``<split>_label.jsonl`` record: the same, with ``image_name`` relative to ``<root>`` and ``is_expert`` last
  (JSON ``false`` for 58K records, ``true`` for 50K records).

Training jsonl (ms-swift style), one record a line:
``{"query": "", "response": <answer>, "history": [], "images": [<path>], "scores": [12 floats], "is_expert": 0|1}``.

Writing is byte-identical for the same input: one JSON formatting (:func:`dumps`: ``ensure_ascii=False``,
default separators, keys in the order above), floats as Python writes them (the shortest repr that reads back
to the same float). The HumanBeauty lines are formatted directly rather than through ``json.dumps`` of a dict
(108,000 records an export; the same bytes, a few times faster; a test holds the two equal).

Validation: :func:`label_record_problem` (a ``label.jsonl`` record, for the importer's per-line messages),
:func:`parse_split_record` and :func:`parse_training_record` (the trainer's readers) raise or return the reason
in words, without the file and line: the caller knows those and puts them in front.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from model_core.standard import (
    LEVELS,
    NUM_DIMENSIONS,
    ScoreError,
    expert_answer,
    overall_answer,
    pick_prompt,
    score_to_level,
    training_scores,
    validate_expert_scores,
    validate_score,
)

# --- layout ---------------------------------------------------------------------------------------------------

DIR_58K = "HumanBeauty-58K"  # overall-only labels: `score` is one float, plus `text_level`
DIR_50K = "HumanBeauty-50K"  # expert labels: `score` is the 12 floats in the standard's order
HUMANBEAUTY_DIRS = (DIR_58K, DIR_50K)
IMAGES_DIR = "images"
LABEL_FILE = "label.jsonl"
SPLITS = ("train", "test")
SPLIT_LABEL_FILES = {"train": "train_label.jsonl", "test": "test_label.jsonl"}
TRAINING_FILES = {"train": "train.jsonl", "test": "test.jsonl"}  # the training-jsonl export's files
_BUFFER = 1 << 20


def kind_dir(*, is_expert: bool) -> str:
    """The folder of a record's kind."""
    return DIR_50K if is_expert else DIR_58K


def image_relpath(*, is_expert: bool, image_name: str) -> str:
    """``HumanBeauty-5xK/images/<file>``: where an image lies under the root (a split record's ``image_name``)."""
    return f"{kind_dir(is_expert=is_expert)}/{IMAGES_DIR}/{image_name}"


class FormatError(ValueError):
    """A record that does not follow the format; the message says what, not where."""


# --- one JSON formatting ----------------------------------------------------------------------------------------


def dumps(record: Any) -> str:
    """The one JSON formatting of every record line."""
    return json.dumps(record, ensure_ascii=False)


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/ ")


def json_string(text: str) -> str:
    """dumps(text): quoted directly when nothing in it needs escaping (sha256 names, folder paths)."""
    return f'"{text}"' if _PLAIN.issuperset(text) else dumps(text)


def _floats(scores: Iterable[Any]) -> str:
    """Comma-separated, as json.dumps writes floats."""
    try:
        return ", ".join(map(float.__repr__, scores))
    except TypeError:  # not floats (Decimal from the database, int from a test): as json writes float(x)
        return ", ".join(float.__repr__(float(s)) for s in scores)


# --- records ----------------------------------------------------------------------------------------------------


def label_record(*, image_name: str, source: str, scores: Sequence[float], is_expert: bool) -> dict[str, Any]:
    """A ``label.jsonl`` record (``scores``: the 12 in the standard's order; 58K records keep the overall only)."""
    if is_expert:
        return {"image_name": image_name, "source": source, "score": [float(s) for s in scores]}
    overall = float(scores[-1])
    return {"image_name": image_name, "source": source, "score": overall, "text_level": score_to_level(overall)}


def split_record(label: dict[str, Any], *, is_expert: bool) -> dict[str, Any]:
    """The ``<split>_label.jsonl`` record of a ``label.jsonl`` record: root-relative image_name, is_expert last."""
    return {**label, "image_name": image_relpath(is_expert=is_expert, image_name=label["image_name"]),
            "is_expert": is_expert}


def training_record(*, scores: Sequence[float], is_expert: bool, image_path: str, query: str = "") -> dict[str, Any]:
    """One ms-swift style record: query, response, history, images, scores (12), is_expert (0|1)."""
    if is_expert:
        expert = [float(s) for s in scores]
        response = expert_answer(expert)
        train_scores = training_scores(overall=scores[-1], expert=expert)
    else:
        response = overall_answer(scores[-1])
        train_scores = training_scores(overall=scores[-1], expert=None)
    return {"query": query, "response": response, "history": [], "images": [image_path], "scores": train_scores,
            "is_expert": 1 if is_expert else 0}


def label_tail(*, source_json: str, scores: Sequence[float], is_expert: bool) -> str:
    """Everything of a HumanBeauty record after its image_name, without the closing brace (``source_json``: the
    source already JSON-encoded, which a writer caches: an export has few sources and many records)."""
    if is_expert:
        return f', "source": {source_json}, "score": [{_floats(scores)}]'
    overall = scores[-1]
    return f', "source": {source_json}, "score": {_floats((overall,))}, "text_level": "{score_to_level(overall)}"'


def label_line(image_name: str, tail: str) -> str:
    """``dumps(label_record(...))``, from :func:`label_tail`."""
    return f'{{"image_name": {json_string(image_name)}{tail}}}'


def split_line(relpath: str, tail: str, *, is_expert: bool) -> str:
    """``dumps(split_record(...))``, from :func:`label_tail`."""
    return f'{{"image_name": {json_string(relpath)}{tail}, "is_expert": {"true" if is_expert else "false"}}}'


# --- validation -------------------------------------------------------------------------------------------------


def label_record_problem(record: Any, *, is_expert: bool) -> str:
    """Why a ``label.jsonl`` record cannot be imported, in words ("" when it can)."""
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    image_name = record.get("image_name")
    if not isinstance(image_name, str) or not image_name.strip():
        return "missing image_name"
    if "/" in image_name or "\\" in image_name or image_name in (".", "..") or "\x00" in image_name:
        return f"image_name {image_name!r} must be a file name inside {IMAGES_DIR}/"
    source = record.get("source", "")
    if not isinstance(source, str):
        return "source must be a string"
    if "score" not in record:
        return "missing score"
    try:
        if is_expert:
            validate_expert_scores(record["score"])
        else:
            validate_score(record["score"], what="score")
    except ScoreError as exc:
        return str(exc)
    return ""


def label_scores(record: dict[str, Any], *, is_expert: bool) -> list[float] | float:
    """The scores of a valid ``label.jsonl`` record: the 12 (50K) or the overall one (58K)."""
    if is_expert:
        return validate_expert_scores(record["score"])
    return validate_score(record["score"])


def record_scores(value: Any, *, is_expert: bool) -> tuple[float, ...]:
    """The 12 scores of a record's ``score`` / ``scores`` value; an overall-only record's first eleven are 0.0
    placeholders (one number, or the training jsonl's list with the overall last). Raises ScoreError."""
    if is_expert:
        return tuple(validate_expert_scores(value))
    if isinstance(value, list):  # the training jsonl: eleven placeholders and the overall last
        if len(value) != NUM_DIMENSIONS:
            raise ScoreError(f"scores must have {NUM_DIMENSIONS} values, got {len(value)}")
        return (0.0,) * (NUM_DIMENSIONS - 1) + (validate_score(value[-1], what="overall score"),)
    return (0.0,) * (NUM_DIMENSIONS - 1) + (validate_score(value, what="overall score"),)


class SplitRecord(NamedTuple):
    image_name: str  # relative to the root
    is_expert: bool
    scores: tuple[float, ...]  # 12 (placeholders first for overall-only)
    source: str
    text_level: str | None  # lower case; None for expert records and where the file gives none


def parse_split_record(raw: dict[str, Any]) -> SplitRecord:
    """A ``<split>_label.jsonl`` record, checked. Raises FormatError."""
    name = raw.get("image_name")
    if not isinstance(name, str) or not name:
        raise FormatError("missing 'image_name'")
    is_expert = raw.get("is_expert")
    if not isinstance(is_expert, bool):
        raise FormatError(f"'is_expert' must be true or false, got {is_expert!r}")
    if "score" not in raw:
        raise FormatError("missing 'score'")
    if is_expert and not isinstance(raw["score"], list):
        raise FormatError(f"an expert record needs 'score' as a list of {NUM_DIMENSIONS} numbers")
    if not is_expert and isinstance(raw["score"], list):
        raise FormatError("an overall-only record needs 'score' as one number")
    try:
        scores = record_scores(raw["score"], is_expert=is_expert)
    except ScoreError as exc:
        raise FormatError(str(exc)) from None
    text_level = raw.get("text_level")
    if text_level is not None and (not isinstance(text_level, str) or text_level.lower() not in LEVELS):
        raise FormatError(f"'text_level' must be one of {', '.join(LEVELS)}, got {text_level!r}")
    return SplitRecord(name, is_expert, scores, str(raw.get("source", "")),
                       None if is_expert or text_level is None else text_level.lower())


class TrainingRecord(NamedTuple):
    image: str  # as written (absolute, or relative to the jsonl's folder)
    is_expert: bool
    scores: tuple[float, ...]
    source: str


def parse_training_record(raw: dict[str, Any]) -> TrainingRecord:
    """A training jsonl record, checked. Raises FormatError."""
    images = raw.get("images")
    if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str):
        raise FormatError("'images' must be a list with exactly one path")
    if "scores" not in raw:
        raise FormatError("missing 'scores'")
    is_expert = raw.get("is_expert")
    if is_expert not in (0, 1) or isinstance(is_expert, float):
        raise FormatError(f"'is_expert' must be 0 or 1, got {is_expert!r}")
    if not isinstance(raw["scores"], list):
        raise FormatError(f"'scores' must be a list of {NUM_DIMENSIONS} numbers")
    try:
        scores = record_scores(raw["scores"], is_expert=bool(is_expert))
    except ScoreError as exc:
        raise FormatError(str(exc)) from None
    return TrainingRecord(images[0], bool(is_expert), scores, str(raw.get("source", "")))


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MalformedLine:
    """A line that is not JSON (or not UTF-8); ``error`` is the parser's exception."""

    error: ValueError


def iter_jsonl(handle: Iterable[str | bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of an open jsonl file (text or binary); a line that
    does not parse gives a :class:`MalformedLine` in place of the value, so each reader words its own error."""
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            yield line_number, MalformedLine(exc)


# --- writing ----------------------------------------------------------------------------------------------------


class FileEntry(NamedTuple):
    path: str  # relative to the written root, POSIX separators
    sha256: str
    size: int


class HashingLineWriter:
    """A text file written once, line by line, hashed as it is written."""

    def __init__(self, root: Path, relpath: str):
        self.relpath = relpath
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "wb", buffering=_BUFFER)
        self._hash = hashlib.sha256()
        self._size = 0

    def line(self, text: str) -> None:
        data = (text + "\n").encode("utf-8")
        self._handle.write(data)
        self._hash.update(data)
        self._size += len(data)

    def close(self) -> FileEntry:
        self._handle.close()
        return FileEntry(self.relpath, self._hash.hexdigest(), self._size)

    def abort(self) -> None:
        self._handle.close()


class HumanBeautyWriter:
    """Writes the label files of the HumanBeauty layout under ``root``, one record at a time: each kind's
    ``label.jsonl`` (created with its ``images/`` folder at the kind's first record) and both split files
    (always, even when empty). Records land in the order given. The caller puts the images in place."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._labels: dict[str, HashingLineWriter] = {}
        self._splits = {split: HashingLineWriter(self.root, name) for split, name in SPLIT_LABEL_FILES.items()}
        self._sources: dict[str, str] = {}

    def add(self, *, image_name: str, source: str, scores: Sequence[float], is_expert: bool, split: str) -> str:
        """Write one record; returns the image's path relative to the root, where the caller puts the file."""
        if split not in self._splits:
            raise FormatError(f"unknown split {split!r} for image {image_name}")
        folder = kind_dir(is_expert=is_expert)
        labels = self._labels.get(folder)
        if labels is None:
            (self.root / folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
            labels = self._labels[folder] = HashingLineWriter(self.root, f"{folder}/{LABEL_FILE}")
        source_json = self._sources.get(source)
        if source_json is None:
            source_json = self._sources[source] = dumps(source)
        tail = label_tail(source_json=source_json, scores=scores, is_expert=is_expert)
        relpath = f"{folder}/{IMAGES_DIR}/{image_name}"
        labels.line(label_line(image_name, tail))
        self._splits[split].line(split_line(relpath, tail, is_expert=is_expert))
        return relpath

    def close(self) -> list[FileEntry]:
        """The label files written: each kind's label.jsonl (58K first), then train and test."""
        return [writer.close() for writer in [*self._labels.values(), *self._splits.values()]]

    def abort(self) -> None:
        for writer in [*self._labels.values(), *self._splits.values()]:
            writer.abort()


class TrainingJsonlWriter:
    """Writes one training jsonl per split under ``root`` (``file_names``: split -> file name). With a
    ``prompt_seed``, each record's query is a prompt picked from the seed and the record's index in its split;
    without, the query stays empty (the trainer picks it at training time)."""

    def __init__(self, root: Path, *, file_names: dict[str, str] | None = None, prompt_seed: int | None = None):
        names = TRAINING_FILES if file_names is None else file_names
        self._writers = {split: HashingLineWriter(Path(root), name) for split, name in names.items()}
        self._count = {split: 0 for split in names}
        self._prompt_seed = prompt_seed

    def add(self, *, scores: Sequence[float], is_expert: bool, image_path: str, split: str) -> None:
        writer = self._writers.get(split)
        if writer is None:
            raise FormatError(f"unknown split {split!r} for image {Path(image_path).name}")
        query = ""
        if self._prompt_seed is not None:
            query = pick_prompt(is_expert=is_expert, seed=self._prompt_seed, record_index=self._count[split])
        self._count[split] += 1
        writer.line(dumps(training_record(scores=scores, is_expert=is_expert, image_path=image_path, query=query)))

    def close(self) -> list[FileEntry]:
        return [writer.close() for writer in self._writers.values()]

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.abort()
