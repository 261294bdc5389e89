"""Metrics against known values, the JSON/PNG report, and the CLI's JSON output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_core.cli import main
from model_core.evaluation import evaluate, level_metrics, regression_metrics
from model_core.model import save_model


def test_regression_metrics_on_known_values():
    true = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    perfect = regression_metrics(true, true)
    assert perfect["plcc"] == pytest.approx(1) and perfect["srcc"] == pytest.approx(1) and perfect["rmse"] == 0
    reversed_ = regression_metrics(true[::-1], true)
    assert reversed_["krcc"] == pytest.approx(-1)
    shifted = regression_metrics(true + 0.1, true)
    assert shifted["mae"] == pytest.approx(0.1) and shifted["rmse"] == pytest.approx(0.1)
    assert np.isnan(regression_metrics(np.full(5, 0.5), true)["plcc"])  # constant prediction: undefined


def test_level_metrics_accuracy_and_macro_f1():
    true = [0.1, 0.3, 0.5, 0.7, 0.9, 0.9]
    pred = [0.1, 0.3, 0.5, 0.7, 0.7, 0.9]  # one "excellent" predicted as "good"
    m = level_metrics(pred, true)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["confusion"][4][3] == 1 and m["per_level"]["good"]["precision"] == pytest.approx(0.5)
    assert 0 < m["f1"] < 1


def test_evaluate_writes_report_and_plots(tiny_model, small_data, tmp_path):
    report = evaluate(tiny_model, small_data, split="test", max_tiles=4, output_dir=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["n_records"] == 6 and saved["n_expert"] == 3
    assert set(saved["overall"]) == {"lm", "regression", "expert", "metavoter"}
    assert set(saved["dimensions"]) >= {"facial_brightness", "comprehensive"}
    for name in ("scatter", "confusion", "dimensions"):
        assert (tmp_path / "eval" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert report.overall["metavoter"]["n"] == 6


def test_cli_synth_and_score_print_json(tiny_model, tmp_path, capsys):
    assert main(["synth", str(tmp_path / "d"), "--n-overall", "2", "--n-expert", "2", "--width", "64",
                 "--height", "64"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_train"] + summary["n_test"] == 4
    save_model(tiny_model, tmp_path / "ckpt")
    images = sorted(str(p) for p in (tmp_path / "d").rglob("*.png"))
    assert main(["score", str(tmp_path / "ckpt"), *images, str(tmp_path / "missing.png"), "--device", "cpu",
                 "--num-workers", "0"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert len(scores) == 5 and all(len(s["expert_scores"]) == 12 for s in scores[:4])
    assert scores[4]["error"] and "missing.png" in scores[4]["error"]


def test_cli_reports_bad_input_as_json_error(tmp_path, capsys):
    (tmp_path / "train.jsonl").write_text("{not json\n")
    code = main(["train", "--data", str(tmp_path / "train.jsonl"), "--output", str(tmp_path / "run"),
                 "--device", "cpu", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and out["error"] == "DataError" and "train.jsonl:1: malformed JSON" in out["message"]
