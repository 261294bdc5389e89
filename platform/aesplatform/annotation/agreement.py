"""Inter-annotator agreement and annotator quality (pure numpy, no Django).

Ratings matrices have shape (images, annotators), NaN where an annotator did not rate an image.

- Krippendorff's alpha, interval metric, any number of raters per unit, missing values allowed:
  alpha = 1 - D_o / D_e over the pairable values (units with at least two ratings).
- ICC for the incomplete designs of campaigns (each image rated by a different random subset of annotators) is
  the one-way random-effects model (Shrout & Fleiss ICC(1,1), with n0 for unequal group sizes), and ICC(1,k)
  its average-measures form. `icc_2_1` (two-way random, absolute agreement, single rater) is provided for complete
  designs (every rater rated every item). Stored `Agreement.icc` is ICC(1,1).
- Per annotator: Pearson correlation with the leave-one-out consensus (the mean of the other raters of the same
  images), accuracy on gold images (mean absolute error and five-level accuracy against the reference), and
  time per task.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from model_core.standard import LEVEL_UPPER_BOUNDS


def _pairable(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(matrix, dtype=float)
    present = ~np.isnan(m)
    keep = present.sum(axis=1) >= 2
    return m[keep], present[keep]


def krippendorff_alpha_interval(matrix: np.ndarray) -> float | None:
    """Krippendorff's alpha with the interval difference function; None when undefined."""
    m, present = _pairable(matrix)
    if m.shape[0] == 0:
        return None
    values = np.where(present, m, 0.0)
    mu = present.sum(axis=1).astype(float)
    s1 = values.sum(axis=1)
    s2 = (values**2).sum(axis=1)
    # sum over ordered pairs i != j within a unit of (v_i - v_j)^2 = 2 (m sum v^2 - (sum v)^2)
    within = 2.0 * (mu * s2 - s1**2)
    n = mu.sum()
    d_o = float((within / (mu - 1.0)).sum() / n)
    all_values = m[present]
    d_e = float(2.0 * (n * (all_values**2).sum() - all_values.sum() ** 2) / (n * (n - 1.0)))
    if d_e <= 1e-15:
        return None
    return 1.0 - d_o / d_e


@dataclass
class OneWayIcc:
    icc1: float | None  # single rater
    icc1k: float | None  # mean of the raters
    items: int
    ratings: int


def icc_oneway(matrix: np.ndarray) -> OneWayIcc:
    """ICC(1,1) and ICC(1,k) from a one-way ANOVA over the items with at least two ratings."""
    m, present = _pairable(matrix)
    a = m.shape[0]
    sizes = present.sum(axis=1).astype(float)
    total = int(sizes.sum())
    if a < 2:
        return OneWayIcc(None, None, a, total)
    values = np.where(present, m, 0.0)
    means = values.sum(axis=1) / sizes
    grand = values.sum() / sizes.sum()
    ssb = float((sizes * (means - grand) ** 2).sum())
    ssw = float(((np.where(present, m - means[:, None], 0.0)) ** 2).sum())
    n_total = sizes.sum()
    msb = ssb / (a - 1)
    dfw = n_total - a
    if dfw <= 0:
        return OneWayIcc(None, None, a, total)
    msw = ssw / dfw
    n0 = (n_total - (sizes**2).sum() / n_total) / (a - 1)
    denominator = msb + (n0 - 1.0) * msw
    icc1 = (msb - msw) / denominator if denominator > 1e-15 else None
    icc1k = (msb - msw) / msb if msb > 1e-15 else None
    return OneWayIcc(icc1, icc1k, a, total)


def icc_2_1(matrix: np.ndarray) -> float | None:
    """ICC(2,1): two-way random effects, absolute agreement, single rater. Needs a complete matrix."""
    m = np.asarray(matrix, dtype=float)
    if np.isnan(m).any():
        raise ValueError("ICC(2,1) needs a complete matrix (every rater rated every item)")
    n, k = m.shape
    if n < 2 or k < 2:
        return None
    grand = m.mean()
    ss_rows = k * ((m.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((m.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((m - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    if denominator <= 1e-15:
        return None
    return float((msr - mse) / denominator)


def _level_index(values: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(LEVEL_UPPER_BOUNDS), values, side="right")


@dataclass
class AnnotatorQuality:
    loo_correlation: float | None
    loo_pairs: int
    gold_count: int
    gold_mae: float | None
    gold_level_accuracy: float | None


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.std(x) <= 1e-12 or np.std(y) <= 1e-12:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def annotator_quality(matrix: np.ndarray, gold: np.ndarray | None = None) -> list[AnnotatorQuality]:
    """Per column of `matrix`: correlation with the leave-one-out consensus, and accuracy on gold rows.

    `gold` has one reference score per row (NaN for rows that are not gold).
    """
    m = np.asarray(matrix, dtype=float)
    present = ~np.isnan(m)
    values = np.where(present, m, 0.0)
    row_sum = values.sum(axis=1)
    row_count = present.sum(axis=1)
    result = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j in range(m.shape[1]):
            rows = present[:, j] & (row_count >= 2)
            own = m[rows, j]
            others = (row_sum[rows] - own) / (row_count[rows] - 1)
            corr = _pearson(own, others)
            gold_count, mae, acc = 0, None, None
            if gold is not None:
                g = np.asarray(gold, dtype=float)
                gold_rows = present[:, j] & ~np.isnan(g)
                gold_count = int(gold_rows.sum())
                if gold_count:
                    mine, ref = m[gold_rows, j], g[gold_rows]
                    mae = float(np.abs(mine - ref).mean())
                    acc = float((_level_index(mine) == _level_index(ref)).mean())
            result.append(AnnotatorQuality(corr, int(rows.sum()), gold_count, mae, acc))
    return result


def finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
