"""The reference evaluation's metrics (HumanAesExpert's eval_HumanAesExpert.py) on fixed predictions, against
values worked out by hand here, and ``evaluate --protocol reference`` through the CLI on a tiny checkpoint."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from model_core.cli import main
from model_core.data import read_records
from model_core.evaluation import (
    REFERENCE_COLUMNS,
    reference_classification,
    reference_level_index,
    reference_metrics,
    regression_metrics,
)
from model_core.model import save_model

# Predictions that run against the truth: every correlation is negative, the reference reports its size.
PRED = [0.8, 0.6, 0.6, 0.2]
TRUE = [0.2, 0.4, 0.6, 0.8]


def test_reference_correlations_are_absolute_and_its_errors_are_rooted():
    m = reference_metrics(PRED, TRUE)
    # Pearson by hand: deviations (0.25, 0.05, 0.05, -0.35) and (-0.3, -0.1, 0.1, 0.3).
    assert m["plcc_abs"] == pytest.approx(0.18 / math.sqrt(0.19 * 0.2), abs=1e-12)  # r = -0.9234
    # Spearman: ranks (4, 2.5, 2.5, 1) vs (1, 2, 3, 4) -> Pearson of the ranks = -4.5 / sqrt(4.5 * 5).
    assert m["srcc_abs"] == pytest.approx(4.5 / math.sqrt(4.5 * 5), abs=1e-12)  # rho = -0.9487
    # Kendall tau-b: 0 concordant, 5 discordant pairs, one pair tied in the prediction only.
    assert m["krcc_abs"] == pytest.approx(5 / math.sqrt((6 - 1) * (6 - 0)), abs=1e-12)  # tau = -0.9129
    # The "mse" column: errors (0.6, 0.2, 0, -0.6) -> mean square 0.19 -> sqrt(0.19 + 1e-8).
    assert m["rmse_ref"] == pytest.approx(math.sqrt(0.19 + 1e-8), abs=1e-12)
    # The "mae" column: mean |error| 0.35 -> sqrt(0.35 + 1e-8), not 0.35.
    assert m["rmae_ref"] == pytest.approx(math.sqrt(0.35 + 1e-8), abs=1e-12)
    assert m["n"] == 4
    ours = regression_metrics(PRED, TRUE)  # ours keep the sign and the plain errors
    assert ours["plcc"] == pytest.approx(-0.18 / math.sqrt(0.038)) and ours["krcc"] < 0
    assert ours["rmse"] == pytest.approx(math.sqrt(0.19)) and ours["mae"] == pytest.approx(0.35)


def test_reference_level_mapping_is_map_quality():
    cases = {-0.1: 0, 0.0: 0, 0.19999: 0, 0.2: 1, 0.39999: 1, 0.4: 2, 0.6: 3, 0.79999: 3, 0.8: 4, 1.0: 4, 1.3: 4}
    assert {v: reference_level_index(v) for v in cases} == cases


def test_reference_level_means_count_a_level_that_only_the_prediction_has():
    # levels: 0 bad, 1 poor, 2 fair, 3 good, 4 excellent. "bad" is predicted once and never true.
    pred = [0.05, 0.25, 0.45, 0.65, 0.65, 0.95]  # bad, poor, fair, good, good, excellent
    true = [0.25, 0.25, 0.45, 0.65, 0.95, 0.95]  # poor, poor, fair, good, excellent, excellent
    m = reference_metrics(pred, true)
    # per level (precision, recall, F1): bad (0, 0, 0), poor (1, 1/2, 2/3), fair (1, 1, 1), good (1/2, 1, 2/3),
    # excellent (1, 1/2, 2/3); five levels counted, bad's 0/0 recall as 0.
    assert m["accuracy_ref"] == pytest.approx(4 / 6)
    assert m["mean_precision_ref"] == pytest.approx((0 + 1 + 1 + 0.5 + 1) / 5)
    assert m["mean_recall_ref"] == pytest.approx((0 + 0.5 + 1 + 1 + 0.5) / 5)
    assert m["mean_f1_ref"] == pytest.approx((0 + 2 / 3 + 1 + 2 / 3 + 2 / 3) / 5)
    # A level in neither truth nor prediction is not averaged in: without "bad" there are four levels.
    without_bad = reference_classification([1, 2, 3, 3, 4], [1, 2, 3, 4, 4])
    assert without_bad["mean_precision_ref"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert without_bad["mean_recall_ref"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_reference_true_level_is_the_records_text_level_where_it_has_one():
    pred = [0.05, 0.25, 0.45, 0.65, 0.65, 0.95]
    true = [0.25, 0.25, 0.45, 0.65, 0.95, 0.95]
    # the fifth record's data says "good" although its score's band is excellent: the reference believes the word
    m = reference_metrics(pred, true, true_levels=[None, None, None, None, "good", None])
    # true: poor, poor, fair, good, good, excellent -> bad (0, 0, 0), poor (1, 1/2, 2/3), fair, good, excellent (1,1,1)
    assert m["accuracy_ref"] == pytest.approx(5 / 6)
    assert m["mean_precision_ref"] == pytest.approx(4 / 5)
    assert m["mean_recall_ref"] == pytest.approx(3.5 / 5)
    assert m["mean_f1_ref"] == pytest.approx((2 / 3 + 3) / 5)


def test_reference_metrics_leave_out_failed_records_and_degenerate_correlations_are_nan():
    m = reference_metrics([0.5, np.nan, 0.5], [0.1, 0.9, 0.3])
    assert m["n"] == 2 and math.isnan(m["plcc_abs"])
    assert m["rmse_ref"] == pytest.approx(math.sqrt((0.16 + 0.04) / 2 + 1e-8))


def test_cli_evaluate_reference_protocol(tiny_model, small_data, tmp_path, capsys):
    save_model(tiny_model, tmp_path / "ckpt")
    assert all(r.text_level is not None for r in read_records(small_data, split="test").records if not r.is_expert)
    args = ["evaluate", str(tmp_path / "ckpt"), str(small_data), "--device", "cpu", "--num-workers", "0"]
    assert main(args + ["--protocol", "reference", "--output", str(tmp_path / "ref")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["protocol"] == "reference" and out["meta"]["max_tiles"] == 12
    assert out["meta"]["reported_head"] == "metavoter"
    table = out["reference_table"]
    assert list(table) == ["model_name", "Accuracy", "mean Precision", "mean Recall", "mean F1", "plcc", "srcc",
                           "krcc", "mse", "mae"]
    block = out["reference"]["metavoter"]
    assert table == {"model_name": str(tmp_path / "ckpt"), **{c: block[k] for c, k in REFERENCE_COLUMNS}}
    ours = out["overall"]["metavoter"]
    assert block["plcc_abs"] == pytest.approx(abs(ours["plcc"])) and block["n"] == ours["n"] == 6
    assert block["rmse_ref"] == pytest.approx(math.sqrt(ours["rmse"] ** 2 + 1e-8))
    assert block["rmae_ref"] == pytest.approx(math.sqrt(ours["mae"] + 1e-8))
    assert set(out["reference_definitions"]) >= {k for _, k in REFERENCE_COLUMNS}
    with (tmp_path / "ref" / "reference_table.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(table) and float(rows[1][5]) == round(table["plcc"], 4)
    assert json.loads((tmp_path / "ref" / "report.json").read_text())["reference_table"]["plcc"] == table["plcc"]

    assert main(args) == 0  # our protocol: 1 tile by default, the reference block still there, no table
    ours_out = json.loads(capsys.readouterr().out)
    assert ours_out["meta"]["protocol"] == "ours" and ours_out["meta"]["max_tiles"] == 1
    assert ours_out["reference_table"] is None and set(ours_out["reference"]) == {"lm", "regression", "expert",
                                                                                 "metavoter"}

    assert main(args + ["--protocol", "reference", "--max-tiles", "4"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["error"] == "ValueError" and "12 tiles" in error["message"]


class _StubBackend:
    """A scorer backend like the released checkpoint's: a MetaVoter and an LM score, no regression head."""

    max_tiles = 12

    def __init__(self, truth_by_image):
        self.truth = truth_by_image

    def score_images(self, paths, *, on_bad_image="skip"):
        from model_core.scoring import ImageScore

        out = [ImageScore(path=str(p), lm_score=0.5, metavoter_score=1.0 - self.truth[p],
                          expert_scores=[0.5] * 12) for p in paths]
        out[0] = ImageScore(path=str(paths[0]), error="unreadable")
        return out


def test_reference_protocol_with_a_scorer_backend_reports_what_it_gives_and_nothing_more(small_data, tmp_path):
    from model_core.evaluation import evaluate

    records = read_records(small_data, split="test").records
    backend = _StubBackend({r.image: r.overall for r in records})
    report = evaluate(backend, small_data, protocol="reference", output_dir=tmp_path / "ref")
    assert report.n_records == 5 and report.n_failed == 1
    assert report.overall["metavoter"]["plcc"] == pytest.approx(-1.0)  # 1 - truth: ours keeps the sign
    assert report.reference["metavoter"]["plcc_abs"] == pytest.approx(1.0) == report.reference_table["plcc"]
    assert report.overall["regression"]["n"] == 0 and math.isnan(report.reference["regression"]["plcc_abs"])
    saved = json.loads((tmp_path / "ref" / "report.json").read_text())
    assert saved["overall"]["regression"]["plcc"] is None and saved["meta"]["max_tiles"] == 12
    backend.max_tiles = 1
    with pytest.raises(ValueError, match="max_tiles=1"):
        evaluate(backend, small_data, protocol="reference")
