"""Bad input to the readers and the dataset: clear errors naming the file and line, or skip-and-count."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_core.data import DataError, ImageDataset, read_humanbeauty, read_training_jsonl
from model_core.scoring import score_images


def _swift(tmp_path: Path, small_data: Path, mutate=None, name="train.jsonl") -> Path:
    lines = (small_data / "swift_train.jsonl").read_text().splitlines()[:4]
    records = [json.loads(line) for line in lines]
    if mutate:
        mutate(records)
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_reads_both_kinds_of_training_records(tmp_path, small_data):
    result = read_training_jsonl(small_data / "swift_train.jsonl")
    assert result.n_skipped == 0 and len(result.records) == 18
    assert {r.is_expert for r in result.records} == {True, False}
    assert all(len(r.scores) == 12 for r in result.records)


def test_malformed_json_names_file_and_line(tmp_path, small_data):
    def mutate(records):
        records[2] = '{"query": "", "response": '
    path = _swift(tmp_path, small_data, mutate)
    with pytest.raises(DataError, match=rf"{path.name}:3: malformed JSON"):
        read_training_jsonl(path)


def test_wrong_number_of_scores_names_the_record(tmp_path, small_data):
    def mutate(records):
        records[1]["scores"] = records[1]["scores"][:7]
    path = _swift(tmp_path, small_data, mutate)
    with pytest.raises(DataError, match=rf"{path.name}:2: .*12 values, got 7"):
        read_training_jsonl(path)


def test_out_of_range_score_names_the_record(tmp_path, small_data):
    def mutate(records):
        records[3]["scores"][-1] = 1.5
    path = _swift(tmp_path, small_data, mutate)
    with pytest.raises(DataError, match=rf"{path.name}:4: .*\[0, 1\], got 1.5"):
        read_training_jsonl(path)


def test_missing_image_raises_or_is_skipped_and_counted(tmp_path, small_data):
    def mutate(records):
        records[0]["images"] = [str(tmp_path / "nowhere.png")]
    path = _swift(tmp_path, small_data, mutate)
    with pytest.raises(DataError, match=rf"{path.name}:1: image not found"):
        read_training_jsonl(path)
    result = read_training_jsonl(path, on_bad_image="skip")
    assert len(result.records) == 3 and result.n_skipped == 1 and "nowhere.png" in result.skipped[0]


def test_corrupt_image_raises_or_is_skipped(tmp_path, small_data):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)

    def mutate(records):
        records[1]["images"] = [str(corrupt)]
    path = _swift(tmp_path, small_data, mutate)
    with pytest.raises(DataError, match=rf"{path.name}:2: corrupt image"):
        read_training_jsonl(path)
    assert read_training_jsonl(path, on_bad_image="skip").n_skipped == 1


def test_humanbeauty_reader_checks_kind_and_score_shape(tmp_path, small_data):
    root = tmp_path / "hb"
    shutil.copytree(small_data, root)
    result = read_humanbeauty(root, split="train")
    assert len(result.records) == 18 and result.records[0].image.is_file()
    lines = (root / "train_label.jsonl").read_text().splitlines()
    bad = json.loads(lines[0])
    bad["is_expert"] = True  # an overall-only score claimed as expert
    (root / "train_label.jsonl").write_text("\n".join([json.dumps(bad)] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"train_label.jsonl:1: an expert record needs 'score' as a list"):
        read_humanbeauty(root, split="train")


def test_image_that_breaks_after_reading_is_reported_at_decode_time(tmp_path, small_data, tiny_model):
    good = sorted((small_data / "HumanBeauty-50K" / "images").iterdir())[:3]
    broken = tmp_path / "truncated.png"
    broken.write_bytes(good[0].read_bytes()[:60])
    dataset = ImageDataset([broken], tile_size=64, max_tiles=1)
    with pytest.raises(DataError, match="truncated.png"):
        dataset[0]
    results = score_images(tiny_model, [good[0], broken, good[1]], batch_size=2)
    assert [r.error is None for r in results] == [True, False, True]
    assert "truncated.png" in results[1].error and results[1].metavoter_score is None
