"""Evaluation: correlation and error metrics per head and per dimension, level classification, JSON + PNG.

Metrics follow the reference evaluation: PLCC (Pearson), SRCC (Spearman), KRCC (Kendall tau-b), RMSE, MAE on
scores in [0, 1]; the five-level accuracy and macro precision/recall/F1 over the levels (computed here, no
scikit-learn dependency). The overall score is evaluated for every record and every head (LM, regression,
expert's overall, MetaVoter); the 12 dimensions of the expert head on the expert records only.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model_core.standard import DIMENSIONS, LEVELS, NUM_LEVELS, score_to_level_index

logger = logging.getLogger(__name__)

HEADS = ("lm", "regression", "expert", "metavoter")
REPORT_FILE = "report.json"


def _nan_if_degenerate(fn, pred: np.ndarray, true: np.ndarray) -> float:
    if len(pred) < 2 or np.std(pred) == 0 or np.std(true) == 0:
        return float("nan")
    value = fn(pred, true)
    return float(value)


def regression_metrics(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """PLCC, SRCC, KRCC, RMSE, MAE and n. Correlations are NaN when either side is constant or n < 2."""
    from scipy import stats

    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true differ in shape: {pred.shape} vs {true.shape}")
    keep = ~(np.isnan(pred) | np.isnan(true))
    pred, true = pred[keep], true[keep]
    if len(pred) == 0:
        return {"plcc": float("nan"), "srcc": float("nan"), "krcc": float("nan"), "rmse": float("nan"),
                "mae": float("nan"), "n": 0}
    return {
        "plcc": _nan_if_degenerate(lambda a, b: stats.pearsonr(a, b)[0], pred, true),
        "srcc": _nan_if_degenerate(lambda a, b: stats.spearmanr(a, b)[0], pred, true),
        "krcc": _nan_if_degenerate(lambda a, b: stats.kendalltau(a, b)[0], pred, true),
        "rmse": float(np.sqrt(np.mean((pred - true) ** 2))),
        "mae": float(np.mean(np.abs(pred - true))),
        "n": int(len(pred)),
    }


def confusion_matrix(pred: Sequence[float], true: Sequence[float]) -> np.ndarray:
    """(5, 5) counts; rows = true level, columns = predicted level."""
    matrix = np.zeros((NUM_LEVELS, NUM_LEVELS), dtype=np.int64)
    for p, t in zip(pred, true):
        if math.isnan(p) or math.isnan(t):
            continue
        matrix[score_to_level_index(min(max(float(t), 0.0), 1.0)), score_to_level_index(min(max(float(p), 0.0), 1.0))] += 1
    return matrix


def level_metrics(pred: Sequence[float], true: Sequence[float]) -> dict[str, Any]:
    """Five-level accuracy, macro precision/recall/F1 (over levels present in truth or prediction), matrix."""
    matrix = confusion_matrix(pred, true)
    total = matrix.sum()
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    present = (predicted + actual) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    macro = lambda v: float(v[present].mean()) if present.any() else float("nan")  # noqa: E731
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "precision": macro(precision),
        "recall": macro(recall),
        "f1": macro(f1),
        "per_level": {level: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(actual[i])} for i, level in enumerate(LEVELS)},
        "confusion": matrix.tolist(),
    }


@dataclass
class EvalReport:
    """Overall metrics per head, per-dimension metrics of the expert head, level metrics per head."""

    overall: dict[str, dict[str, float]]  # head -> regression metrics
    levels: dict[str, dict[str, Any]]  # head -> level metrics
    dimensions: dict[str, dict[str, float]]  # dimension key -> regression metrics (expert head, expert records)
    expert_mean_plcc: float
    n_records: int
    n_expert: int
    n_failed: int
    plots: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "levels": self.levels, "dimensions": self.dimensions,
                "expert_mean_plcc": self.expert_mean_plcc, "n_records": self.n_records, "n_expert": self.n_expert,
                "n_failed": self.n_failed, "plots": self.plots, "meta": self.meta}


def compute_report(preds, truth: np.ndarray, is_expert: np.ndarray) -> EvalReport:
    """Metrics from :class:`~model_core.scoring.Predictions` and the true (N, 12) scores."""
    truth = np.asarray(truth, dtype=np.float64)
    is_expert = np.asarray(is_expert, dtype=bool)
    ok = preds.ok
    overall_true = truth[:, -1]
    head_values = {"lm": preds.lm, "regression": preds.regression, "expert": preds.expert[:, -1],
                   "metavoter": preds.metavoter}
    overall = {h: regression_metrics(v[ok], overall_true[ok]) for h, v in head_values.items()}
    levels = {h: level_metrics(v[ok], overall_true[ok]) for h, v in head_values.items()}
    rows = ok & is_expert
    dimensions = {d.key: regression_metrics(preds.expert[rows, d.index], truth[rows, d.index]) for d in DIMENSIONS}
    plccs = [m["plcc"] for m in dimensions.values() if not math.isnan(m["plcc"])]
    return EvalReport(overall=overall, levels=levels, dimensions=dimensions,
                      expert_mean_plcc=float(np.mean(plccs)) if plccs else float("nan"),
                      n_records=int(ok.sum()), n_expert=int(rows.sum()), n_failed=int((~ok).sum()))


def write_plots(preds, truth: np.ndarray, is_expert: np.ndarray, directory: str | Path) -> dict[str, str]:
    """scatter.png (predicted vs true overall, one panel per head), confusion.png (MetaVoter levels),
    dimensions.png (expert head, one panel per dimension). Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    truth = np.asarray(truth, dtype=np.float64)
    ok = preds.ok
    overall_true = truth[ok, -1]
    paths: dict[str, str] = {}

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), sharex=True, sharey=True)
    for ax, (head, values) in zip(axes, (("LM head", preds.lm), ("Regression head", preds.regression),
                                         ("Expert head (overall)", preds.expert[:, -1]),
                                         ("MetaVoter", preds.metavoter))):
        v = values[ok]
        ax.scatter(overall_true, v, s=8, alpha=0.6)
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        plcc = regression_metrics(v, overall_true)["plcc"]
        ax.set_title(f"{head}\nPLCC {plcc:.3f}")
        ax.set_xlabel("true overall score")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("predicted")
    fig.tight_layout()
    paths["scatter"] = str(directory / "scatter.png")
    fig.savefig(paths["scatter"], dpi=90)
    plt.close(fig)

    matrix = confusion_matrix(preds.metavoter[ok], overall_true)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(NUM_LEVELS), LEVELS, rotation=30)
    ax.set_yticks(range(NUM_LEVELS), LEVELS)
    ax.set_xlabel("predicted level (MetaVoter)")
    ax.set_ylabel("true level")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black" if count < matrix.max() / 2 else "white")
    fig.tight_layout()
    paths["confusion"] = str(directory / "confusion.png")
    fig.savefig(paths["confusion"], dpi=90)
    plt.close(fig)

    rows = ok & np.asarray(is_expert, dtype=bool)
    if rows.any():
        fig, axes = plt.subplots(3, 4, figsize=(14, 10), sharex=True, sharey=True)
        for ax, d in zip(axes.ravel(), DIMENSIONS):
            ax.scatter(truth[rows, d.index], preds.expert[rows, d.index], s=6, alpha=0.6)
            ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
            ax.set_title(d.name, fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
        fig.tight_layout()
        paths["dimensions"] = str(directory / "dimensions.png")
        fig.savefig(paths["dimensions"], dpi=80)
        plt.close(fig)
    return paths


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def evaluate(
    model, data: str | Path, *, split: str = "test", max_tiles: int = 1, batch_size: int = 16, num_workers: int = 0,
    on_bad_image: str = "raise", output_dir: str | Path | None = None, plots: bool = True, records=None,
) -> EvalReport:
    """Score a test set (HumanBeauty root -> ``<split>_label.jsonl``, or a training jsonl) and compute the report.

    With ``output_dir``: writes ``report.json`` (NaN written as null) and the PNG plots there.
    """
    from model_core.data import read_records
    from model_core.scoring import predict

    if records is None:
        result = read_records(data, split=split, on_bad_image=on_bad_image)
        records = result.records
        n_skipped = result.n_skipped
    else:
        n_skipped = 0
    if not records:
        raise ValueError(f"{data}: no records to evaluate")
    preds = predict(model, records, max_tiles=max_tiles, batch_size=batch_size, num_workers=num_workers,
                    on_bad_image=on_bad_image)
    truth = np.array([r.scores for r in records], dtype=np.float64)
    is_expert = np.array([r.is_expert for r in records], dtype=bool)
    report = compute_report(preds, truth, is_expert)
    report.n_failed += n_skipped
    report.meta = {"data": str(data), "split": split, "max_tiles": max_tiles}
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if plots:
            report.plots = write_plots(preds, truth, is_expert, output_dir)
        (output_dir / REPORT_FILE).write_text(json.dumps(_json_safe(report.to_dict()), indent=2))
    return report
