"""Evaluation: correlation and error metrics per head and per dimension, level classification, JSON + PNG.

Our metrics (primary): PLCC (Pearson), SRCC (Spearman), KRCC (Kendall tau-b) with their signs, plain RMSE and
MAE on scores in [0, 1]; the five-level accuracy and macro precision/recall/F1 over the levels. The overall score
is evaluated for every record and every head (LM, regression, expert's overall, MetaVoter); the 12 dimensions of
the expert head on the expert records only.

The reference's metrics (HumanAesExpert's eval_HumanAesExpert.py), added beside ours under names of their own
(``reference`` block per head, see :data:`REFERENCE_DEFINITIONS`): absolute correlations without a curve fit,
its "mse" column (an RMSE with 1e-8 inside the root), its "mae" column (the square root of the MAE + 1e-8) and
its level accuracy / mean precision / recall / F1. ``protocol="reference"`` evaluates the way that script does:
12 tiles + thumbnail, the MetaVoter as the reported score, and its result table under its own column names.
No scikit-learn: the per-class counts are written out here.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model_core.standard import DIMENSIONS, LEVEL_UPPER_BOUNDS, LEVELS, NUM_LEVELS, score_to_level_index

logger = logging.getLogger(__name__)

HEADS = ("lm", "regression", "expert", "metavoter")
REPORT_FILE = "report.json"
REFERENCE_TABLE_FILE = "reference_table.csv"
PROTOCOLS = ("ours", "reference")
REFERENCE_MAX_TILES = 12  # the reference's load_image(max_num=12): 12 tiles + thumbnail
REFERENCE_HEAD = "metavoter"  # the reference reports run_metavoter's score
REFERENCE_EPS = 1e-8
# The reference script's result columns, in its order, and the key of our reference block each one is.
REFERENCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Accuracy", "accuracy_ref"), ("mean Precision", "mean_precision_ref"), ("mean Recall", "mean_recall_ref"),
    ("mean F1", "mean_f1_ref"), ("plcc", "plcc_abs"), ("srcc", "srcc_abs"), ("krcc", "krcc_abs"),
    ("mse", "rmse_ref"), ("mae", "rmae_ref"),
)
REFERENCE_DEFINITIONS: dict[str, str] = {
    "plcc_abs": "|Pearson r| of predicted vs true overall score, no curve fit (reference column 'plcc')",
    "srcc_abs": "|Spearman rho| (reference column 'srcc')",
    "krcc_abs": "|Kendall tau-b| (reference column 'krcc')",
    "rmse_ref": "sqrt(mean((pred - true)^2) + 1e-8) (reference column 'mse'; an RMSE, not an MSE)",
    "rmae_ref": "sqrt(mean(|pred - true|) + 1e-8) (reference column 'mae'; the square root of the MAE)",
    "accuracy_ref": "share of records whose predicted level equals the true level (reference column 'Accuracy')",
    "mean_precision_ref": "mean over the levels present in truth or prediction of tp / (tp + fp), 0 when nothing "
                          "was predicted as that level (reference column 'mean Precision')",
    "mean_recall_ref": "mean over the same levels of tp / (tp + fn), 0 when the level is absent from the truth "
                       "(reference column 'mean Recall')",
    "mean_f1_ref": "mean over the same levels of 2 tp / (2 tp + fp + fn) (reference column 'mean F1')",
    "levels": "predicted level: the score's band (< 0.2 bad, < 0.4 poor, < 0.6 fair, < 0.8 good, else excellent); "
              "true level: an overall-only record's text_level where the data gives one, else the band of the "
              "true overall score",
}


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
        matrix[score_to_level_index(min(max(float(t), 0.0), 1.0)),
               score_to_level_index(min(max(float(p), 0.0), 1.0))] += 1
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


def reference_level_index(value: float) -> int:
    """The reference's ``map_quality`` as an index into LEVELS: no range check, below 0 is bad, above 1 excellent."""
    for index, upper in enumerate(LEVEL_UPPER_BOUNDS):
        if value < upper:
            return index
    return NUM_LEVELS - 1


def reference_classification(pred_levels: Sequence[int], true_levels: Sequence[int]) -> dict[str, float]:
    """Accuracy and the means of per-class precision, recall and F1 the way the reference script gets them:
    ``np.mean(precision_score(true, pred, average=None))`` and the like. The classes are the sorted union of the
    labels in truth and prediction (a level no record has and none is predicted as does not count); a 0/0
    precision or recall counts as 0 (scikit-learn's default after its warning)."""
    pred = np.asarray(pred_levels, dtype=np.int64)
    true = np.asarray(true_levels, dtype=np.int64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true levels differ in shape: {pred.shape} vs {true.shape}")
    nan = float("nan")
    if len(pred) == 0:
        return {"accuracy_ref": nan, "mean_precision_ref": nan, "mean_recall_ref": nan, "mean_f1_ref": nan}
    precisions, recalls, f1s = [], [], []
    for label in np.union1d(true, pred):
        tp = int(np.sum((pred == label) & (true == label)))
        fp = int(np.sum((pred == label) & (true != label)))
        fn = int(np.sum((pred != label) & (true == label)))
        precisions.append(tp / (tp + fp) if tp + fp else 0.0)
        recalls.append(tp / (tp + fn) if tp + fn else 0.0)
        f1s.append(2 * tp / (2 * tp + fp + fn))  # never 0/0: the label occurs in truth or prediction
    return {"accuracy_ref": float(np.mean(pred == true)), "mean_precision_ref": float(np.mean(precisions)),
            "mean_recall_ref": float(np.mean(recalls)), "mean_f1_ref": float(np.mean(f1s))}


def reference_metrics(
    pred: Sequence[float], true: Sequence[float], *, true_levels: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """The reference script's numbers for one score (see :data:`REFERENCE_DEFINITIONS`) and n.

    ``true_levels``: a level word per record (the data's ``text_level``) or None where the record has none; the
    band of the true score stands in for a None. Records with a NaN prediction or truth are left out (the
    reference script has no such records: it stops at an unreadable image)."""
    from scipy import stats

    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true differ in shape: {pred.shape} vs {true.shape}")
    words = list(true_levels) if true_levels is not None else [None] * len(true)
    if len(words) != len(true):
        raise ValueError(f"true_levels has {len(words)} entries for {len(true)} records")
    keep = ~(np.isnan(pred) | np.isnan(true))
    pred, true = pred[keep], true[keep]
    words = [w for w, k in zip(words, keep) if k]
    nan = float("nan")
    out: dict[str, float] = {"plcc_abs": nan, "srcc_abs": nan, "krcc_abs": nan, "rmse_ref": nan, "rmae_ref": nan}
    if len(pred):
        out["plcc_abs"] = abs(_nan_if_degenerate(lambda a, b: stats.pearsonr(a, b)[0], pred, true))
        out["srcc_abs"] = abs(_nan_if_degenerate(lambda a, b: stats.spearmanr(a, b)[0], pred, true))
        out["krcc_abs"] = abs(_nan_if_degenerate(lambda a, b: stats.kendalltau(a, b)[0], pred, true))
        out["rmse_ref"] = float(np.sqrt(np.mean((pred - true) ** 2) + REFERENCE_EPS))
        out["rmae_ref"] = float(np.sqrt(np.mean(np.abs(pred - true)) + REFERENCE_EPS))
    true_idx = [LEVELS.index(w) if w is not None else reference_level_index(t) for w, t in zip(words, true)]
    out.update(reference_classification([reference_level_index(p) for p in pred], true_idx))
    out["n"] = int(len(pred))
    return out


def reference_table(report: "EvalReport", *, model_name: str, head: str = REFERENCE_HEAD) -> dict[str, Any]:
    """One row of the reference script's result CSV (its column names, its order; values not rounded)."""
    block = report.reference.get(head)
    if block is None:
        raise ValueError(f"the report has no reference metrics for head {head!r}")
    return {"model_name": model_name, **{column: block[key] for column, key in REFERENCE_COLUMNS}}


@dataclass
class EvalReport:
    """Overall metrics per head, per-dimension metrics of the expert head, level metrics per head; the
    reference script's metrics per head under ``reference`` (their own names); under the reference protocol the
    reference script's result row as ``reference_table``."""

    overall: dict[str, dict[str, float]]  # head -> regression metrics (ours)
    levels: dict[str, dict[str, Any]]  # head -> level metrics (ours)
    dimensions: dict[str, dict[str, float]]  # dimension key -> regression metrics (expert head, expert records)
    expert_mean_plcc: float
    n_records: int
    n_expert: int
    n_failed: int
    reference: dict[str, dict[str, float]] = field(default_factory=dict)  # head -> reference_metrics
    reference_table: dict[str, Any] | None = None  # the reference script's CSV row (reference protocol only)
    plots: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "levels": self.levels, "dimensions": self.dimensions,
                "expert_mean_plcc": self.expert_mean_plcc, "n_records": self.n_records, "n_expert": self.n_expert,
                "n_failed": self.n_failed, "reference": self.reference,
                "reference_definitions": REFERENCE_DEFINITIONS, "reference_table": self.reference_table,
                "plots": self.plots, "meta": self.meta}


def compute_report(
    preds, truth: np.ndarray, is_expert: np.ndarray, *, true_levels: Sequence[str | None] | None = None,
) -> EvalReport:
    """Metrics from :class:`~model_core.scoring.Predictions` and the true (N, 12) scores.

    ``true_levels``: the data's level word per record (None where it has none), for the reference metrics."""
    truth = np.asarray(truth, dtype=np.float64)
    is_expert = np.asarray(is_expert, dtype=bool)
    ok = preds.ok
    words = list(true_levels) if true_levels is not None else [None] * len(truth)
    ok_words = [w for w, k in zip(words, ok) if k]
    overall_true = truth[:, -1]
    head_values = {"lm": preds.lm, "regression": preds.regression, "expert": preds.expert[:, -1],
                   "metavoter": preds.metavoter}
    overall = {h: regression_metrics(v[ok], overall_true[ok]) for h, v in head_values.items()}
    levels = {h: level_metrics(v[ok], overall_true[ok]) for h, v in head_values.items()}
    reference = {h: reference_metrics(v[ok], overall_true[ok], true_levels=ok_words) for h, v in head_values.items()}
    rows = ok & is_expert
    dimensions = {d.key: regression_metrics(preds.expert[rows, d.index], truth[rows, d.index]) for d in DIMENSIONS}
    plccs = [m["plcc"] for m in dimensions.values() if not math.isnan(m["plcc"])]
    return EvalReport(overall=overall, levels=levels, dimensions=dimensions,
                      expert_mean_plcc=float(np.mean(plccs)) if plccs else float("nan"),
                      n_records=int(ok.sum()), n_expert=int(rows.sum()), n_failed=int((~ok).sum()),
                      reference=reference)


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


def resolve_max_tiles(protocol: str, max_tiles: int | None) -> int:
    """The tiling an evaluation runs at: the reference protocol is 12 tiles (+ thumbnail) and nothing else;
    ours defaults to 1 (the pre-scoring setting)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "reference":
        if max_tiles is not None and max_tiles != REFERENCE_MAX_TILES:
            raise ValueError(f"the reference protocol evaluates at {REFERENCE_MAX_TILES} tiles (+ thumbnail), as "
                             f"the reference script does; got max_tiles={max_tiles}. Leave it out, or use "
                             "protocol 'ours' for another tiling")
        return REFERENCE_MAX_TILES
    return 1 if max_tiles is None else max_tiles


def predictions_from_scores(scores: Sequence[Any]):
    """:class:`~model_core.scoring.Predictions` from per-image :class:`~model_core.scoring.ImageScore` results
    (a scorer backend such as the released checkpoint's): a value the backend does not give stays NaN, so its
    metrics come out as not available rather than made up."""
    from model_core.scoring import Predictions

    def column(values) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

    n = len(scores)
    expert = np.full((n, len(DIMENSIONS)), np.nan)
    probs = np.full((n, NUM_LEVELS), np.nan)
    for i, s in enumerate(scores):
        if s.expert_scores is not None:
            expert[i] = s.expert_scores
        if s.level_probs is not None:
            probs[i] = s.level_probs
    metavoter = column(s.metavoter_score for s in scores)
    failed = {i: s.error or "not scored" for i, s in enumerate(scores) if s.error or np.isnan(metavoter[i])}
    return Predictions(lm=column(s.lm_score for s in scores), regression=column(s.regression_score for s in scores),
                       expert=expert, metavoter=metavoter, spread=column(s.uncertainty for s in scores),
                       level_probs=probs, failed=failed)


def _predict(model, records, *, max_tiles: int, batch_size: int, num_workers: int, on_bad_image: str):
    """Our model: the batched one-pass :func:`~model_core.scoring.predict`. Any other scorer (an object with
    ``score_images(paths, on_bad_image=...)`` and ``max_tiles``, e.g. ``RemoteCodeScorer``): its own scores."""
    import torch

    from model_core.scoring import predict

    if isinstance(model, torch.nn.Module):
        return predict(model, records, max_tiles=max_tiles, batch_size=batch_size, num_workers=num_workers,
                       on_bad_image=on_bad_image)  # type: ignore[arg-type]
    scorer_tiles = getattr(model, "max_tiles", None)
    if scorer_tiles != max_tiles:
        raise ValueError(f"the scorer tiles at max_tiles={scorer_tiles}, the evaluation asks for {max_tiles}")
    return predictions_from_scores(model.score_images([r.image for r in records], on_bad_image=on_bad_image))


def evaluate(
    model, data: str | Path, *, split: str = "test", max_tiles: int | None = None, batch_size: int = 16,
    num_workers: int = 0, on_bad_image: str = "raise", output_dir: str | Path | None = None, plots: bool = True,
    records=None, protocol: str = "ours", model_name: str = "",
) -> EvalReport:
    """Score a test set (HumanBeauty root -> ``<split>_label.jsonl``, or a training jsonl) and compute the report.

    ``model``: our model, or a scorer backend with ``score_images`` (e.g. a released checkpoint's
    ``RemoteCodeScorer``, built with the same ``max_tiles``); what a backend does not give is not available.

    ``protocol="ours"`` (default): at ``max_tiles`` (default 1). ``protocol="reference"``: as the reference
    evaluation script, at 12 tiles + thumbnail with the MetaVoter as the reported score; the report then carries
    ``reference_table`` (the script's result row, ``model_name`` in its first column). Both report our metrics
    and the reference's; ``meta`` records the protocol. With ``output_dir``: writes ``report.json`` (NaN written
    as null), the PNG plots and, under the reference protocol, ``reference_table.csv``.
    """
    from model_core.data import read_records

    max_tiles = resolve_max_tiles(protocol, max_tiles)
    if records is None:
        result = read_records(data, split=split, on_bad_image=on_bad_image)
        records = result.records
        n_skipped = result.n_skipped
    else:
        n_skipped = 0
    if not records:
        raise ValueError(f"{data}: no records to evaluate")
    preds = _predict(model, records, max_tiles=max_tiles, batch_size=batch_size, num_workers=num_workers,
                     on_bad_image=on_bad_image)
    truth = np.array([r.scores for r in records], dtype=np.float64)
    is_expert = np.array([r.is_expert for r in records], dtype=bool)
    report = compute_report(preds, truth, is_expert, true_levels=[r.text_level for r in records])
    report.n_failed += n_skipped
    report.meta = {"data": str(data), "split": split, "max_tiles": max_tiles, "protocol": protocol}
    if protocol == "reference":
        report.meta["reported_head"] = REFERENCE_HEAD
        report.reference_table = reference_table(report, model_name=model_name or str(data))
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if plots:
            report.plots = write_plots(preds, truth, is_expert, output_dir)
        if report.reference_table is not None:
            write_reference_table(report.reference_table, output_dir / REFERENCE_TABLE_FILE)
        (output_dir / REPORT_FILE).write_text(json.dumps(_json_safe(report.to_dict()), indent=2))
    return report


def write_reference_table(row: dict[str, Any], path: str | Path) -> Path:
    """The reference script's CSV: its header and one row, numbers rounded to 4 places as it writes them."""
    import csv

    path = Path(path)
    header = ["model_name", *(column for column, _ in REFERENCE_COLUMNS)]
    values = [row["model_name"]] + [_round4(row[column]) for column, _ in REFERENCE_COLUMNS]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(values)
    return path


def _round4(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)
