"""model_core.formats: the writers' direct formatting is json.dumps of the records, the readers' checks word
what is wrong, and what a writer writes reads back."""

from __future__ import annotations

import io
import json

import pytest

from model_core import formats
from model_core.standard import OVERALL_ANSWER_TEMPLATE, score_to_level

EXPERT = [1 / 3, 0.0, 1.0, 0.1 + 0.2, 1e-7, 0.5, 0.25, 0.75, 0.999, 0.01, 0.2, 0.6]
OVERALL = [0.0] * 11 + [2 / 3]


def test_humanbeauty_writer_writes_the_records_of_the_schema(tmp_path):
    writer = formats.HumanBeautyWriter(tmp_path)
    rows = [("a.png", "FFHQ", OVERALL, False, "train"), ("é b.png", 'Ünï "src"', EXPERT, True, "test"),
            ("c.jpg", "FFHQ", EXPERT, True, "train")]
    paths = [writer.add(image_name=n, source=s, scores=sc, is_expert=e, split=sp) for n, s, sc, e, sp in rows]
    entries = writer.close()
    assert paths == ["HumanBeauty-58K/images/a.png", "HumanBeauty-50K/images/é b.png", "HumanBeauty-50K/images/c.jpg"]
    assert [e.path for e in entries] == ["HumanBeauty-58K/label.jsonl", "HumanBeauty-50K/label.jsonl",
                                         "train_label.jsonl", "test_label.jsonl"]
    assert (tmp_path / "HumanBeauty-50K" / "images").is_dir()
    labels = {n: formats.label_record(image_name=n, source=s, scores=sc, is_expert=e) for n, s, sc, e, _ in rows}
    assert (tmp_path / "HumanBeauty-58K/label.jsonl").read_text().splitlines() == [formats.dumps(labels["a.png"])]
    assert labels["a.png"] == {"image_name": "a.png", "source": "FFHQ", "score": 2 / 3,
                               "text_level": score_to_level(2 / 3)}
    for split in formats.SPLITS:
        expected = [
            formats.dumps(formats.split_record(labels[n], is_expert=e)) for n, _, _, e, sp in rows if sp == split
        ]
        assert (tmp_path / formats.SPLIT_LABEL_FILES[split]).read_text(encoding="utf-8").splitlines() == expected
    # and the trainer's reader takes them back
    with open(tmp_path / "test_label.jsonl", encoding="utf-8") as handle:
        (line, raw), = formats.iter_jsonl(handle)
    parsed = formats.parse_split_record(raw)
    assert line == 1 and parsed.is_expert and parsed.scores == tuple(EXPERT) and parsed.source == 'Ünï "src"'
    with pytest.raises(formats.FormatError, match="unknown split 'dev'"):
        formats.HumanBeautyWriter(tmp_path / "other").add(image_name="x.png", source="", scores=EXPERT,
                                                          is_expert=True, split="dev")


def test_training_writer_records_and_prompts(tmp_path):
    writer = formats.TrainingJsonlWriter(tmp_path, prompt_seed=3)
    writer.add(scores=OVERALL, is_expert=False, image_path="/data/a.png", split="train")
    writer.add(scores=EXPERT, is_expert=True, image_path="/data/b.png", split="train")
    assert [e.path for e in writer.close()] == ["train.jsonl", "test.jsonl"]
    first, second = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert list(first) == ["query", "response", "history", "images", "scores", "is_expert"]
    assert first["query"] and first["is_expert"] == 0 and first["images"] == ["/data/a.png"]
    assert first["response"] == OVERALL_ANSWER_TEMPLATE.format(level=score_to_level(2 / 3))
    assert first["scores"] == OVERALL and second["scores"] == EXPERT and second["is_expert"] == 1
    assert formats.parse_training_record(second) == ("/data/b.png", True, tuple(EXPERT), "")
    assert (tmp_path / "test.jsonl").read_text() == ""


@pytest.mark.parametrize(("record", "is_expert", "problem"), [
    ([1], False, "a record must be a JSON object"),
    ({"score": 0.5}, False, "missing image_name"),
    ({"image_name": "../x.png", "score": 0.5}, False, "must be a file name inside images/"),
    ({"image_name": "x.png", "source": 3, "score": 0.5}, False, "source must be a string"),
    ({"image_name": "x.png"}, False, "missing score"),
    ({"image_name": "x.png", "score": [0.5] * 11}, True, "12"),
    ({"image_name": "x.png", "score": 0.5}, False, ""),
])
def test_label_record_problems_in_words(record, is_expert, problem):
    found = formats.label_record_problem(record, is_expert=is_expert)
    assert (problem in found and found) if problem else found == ""


@pytest.mark.parametrize(("raw", "message"), [
    ({"is_expert": True, "score": EXPERT}, "missing 'image_name'"),
    ({"image_name": "a", "is_expert": 1, "score": EXPERT}, "'is_expert' must be true or false"),
    ({"image_name": "a", "is_expert": False, "score": EXPERT}, "needs 'score' as one number"),
    ({"image_name": "a", "is_expert": False, "score": 0.5, "text_level": "meh"}, "'text_level' must be one of"),
])
def test_split_record_errors(raw, message):
    with pytest.raises(formats.FormatError, match=message):
        formats.parse_split_record(raw)


def test_iter_jsonl_skips_blank_lines_and_hands_malformed_ones_back():
    lines = list(formats.iter_jsonl(io.BytesIO(b'{"a": 1}\n\n{broken\n\xff\n')))
    assert lines[0] == (1, {"a": 1})
    assert [n for n, _ in lines[1:]] == [3, 4]
    assert all(isinstance(value, formats.MalformedLine) for _, value in lines[1:])
