"""Mean opinion scores after ITU-R BT.500-style annotator screening (pure numpy/scipy, no Django).

Input: a ratings matrix of one dimension, shape (images, annotators), NaN where an annotator did not rate an
image (campaigns are incomplete designs: each image gets `redundancy` of many annotators).

1. Normalisation (per annotator): each annotator's scores are z-scored with the annotator's own mean and standard
   deviation, then mapped back onto the scale of all ratings (global mean and std), so that a harsh or a lenient
   annotator, or one who uses a narrow range, counts like everyone else. Annotators with fewer than
   `MIN_RATINGS_FOR_NORMALISATION` ratings, or with zero spread, are left as they are (their statistics would
   be noise). The result is clipped to [0, 1].
2. Screening (BT.500-14 Annex 2, §2.3.1, on the normalised scores): per image, mean, standard deviation and the
   kurtosis coefficient beta2 over its ratings; a rating is "high" when above mean + k*std and "low" when below
   mean - k*std, with k = 2 when 2 <= beta2 <= 4 (normal) and sqrt(20) otherwise. An annotator with P high and
   Q low ratings over N rated images is rejected when (P + Q) / N > 0.05 and |P - Q| / (P + Q) < 0.3.
   Only images with at least `MIN_RATINGS_FOR_SCREENING` ratings take part in the counts.
   The kurtosis test needs large panels (with 3-5 raters per image one outlier inflates the std it is measured
   against), so a second test, after BT.500-14's correlation-based screening, covers small panels: an annotator
   with at least `MIN_PAIRS_FOR_CORRELATION` images shared with others whose Pearson correlation with the
   leave-one-out mean (the mean of the other raters of the same images) is below `MIN_CORRELATION` is rejected.
3. MOS per image over the ratings of annotators not rejected (all ratings when every rater of the image was
   rejected): count, sample std (ddof 1), and the 95 % confidence interval mean +- t(0.975, n-1) * std / sqrt(n),
   clipped to [0, 1] (no interval for a single rating).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_RATINGS_FOR_NORMALISATION = 5
MIN_RATINGS_FOR_SCREENING = 3
MIN_PAIRS_FOR_CORRELATION = 10
MIN_CORRELATION = 0.3
METHOD = "bt500"


@dataclass
class ConsensusResult:
    mos: np.ndarray  # (images,) NaN where the image has no rating
    count: np.ndarray  # (images,) ratings used
    std: np.ndarray  # (images,) NaN when count < 2
    ci_low: np.ndarray
    ci_high: np.ndarray
    rejected: np.ndarray  # (annotators,) bool
    rejected_per_image: np.ndarray  # (images,) ratings left out because their annotator was rejected


def normalise(matrix: np.ndarray, *, min_ratings: int = MIN_RATINGS_FOR_NORMALISATION) -> np.ndarray:
    """Per-annotator z-score normalisation, rescaled to the global mean and std of all ratings, clipped to [0, 1]."""
    m = np.asarray(matrix, dtype=float)
    out = m.copy()
    present = ~np.isnan(m)
    if present.sum() < 2:
        return out
    g_mean = np.nanmean(m)
    g_std = np.nanstd(m, ddof=1)
    counts = present.sum(axis=0)
    for j in range(m.shape[1]):
        if counts[j] < min_ratings:
            continue
        col = m[present[:, j], j]
        sd = col.std(ddof=1)
        if not np.isfinite(sd) or sd <= 1e-9 or not np.isfinite(g_std) or g_std <= 1e-9:
            continue
        out[present[:, j], j] = (col - col.mean()) / sd * g_std + g_mean
    return np.clip(out, 0.0, 1.0, out=out, where=~np.isnan(out))


def screen(matrix: np.ndarray, *, min_ratings: int = MIN_RATINGS_FOR_SCREENING) -> np.ndarray:
    """BT.500 observer screening: a boolean mask of rejected annotators (columns)."""
    m = np.asarray(matrix, dtype=float)
    n_images, n_annotators = m.shape
    rejected = np.zeros(n_annotators, dtype=bool)
    if n_images == 0 or n_annotators == 0:
        return rejected
    present = ~np.isnan(m)
    per_image = present.sum(axis=1)
    usable = per_image >= min_ratings
    if not usable.any():
        return rejected
    sub = m[usable]
    sub_present = present[usable]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(sub, axis=1)
        std = np.nanstd(sub, axis=1, ddof=1)
        dev = sub - mean[:, None]
        m2 = np.nanmean(dev**2, axis=1)
        m4 = np.nanmean(dev**4, axis=1)
        beta2 = np.where(m2 > 0, m4 / (m2**2), 0.0)
    k = np.where((beta2 >= 2) & (beta2 <= 4), 2.0, np.sqrt(20.0))
    upper = (mean + k * std)[:, None]
    lower = (mean - k * std)[:, None]
    with np.errstate(invalid="ignore"):
        high = sub_present & (sub > upper)
        low = sub_present & (sub < lower)
    p = high.sum(axis=0)
    q = low.sum(axis=0)
    n = sub_present.sum(axis=0)
    pq = p + q
    with np.errstate(invalid="ignore", divide="ignore"):
        rejected = (n > 0) & (pq / np.maximum(n, 1) > 0.05) & (pq > 0) & (np.abs(p - q) / np.maximum(pq, 1) < 0.3)
    return rejected | screen_by_correlation(m)


def screen_by_correlation(matrix: np.ndarray) -> np.ndarray:
    """Annotators whose ratings do not follow the others' (Pearson r with the leave-one-out mean < MIN_CORRELATION)."""
    m = np.asarray(matrix, dtype=float)
    present = ~np.isnan(m)
    values = np.where(present, m, 0.0)
    row_sum, row_count = values.sum(axis=1), present.sum(axis=1)
    rejected = np.zeros(m.shape[1], dtype=bool)
    for j in range(m.shape[1]):
        rows = present[:, j] & (row_count >= 2)
        if rows.sum() < MIN_PAIRS_FOR_CORRELATION:
            continue
        own = m[rows, j]
        others = (row_sum[rows] - own) / (row_count[rows] - 1)
        if own.std() <= 1e-12 or others.std() <= 1e-12:
            continue
        rejected[j] = np.corrcoef(own, others)[0, 1] < MIN_CORRELATION
    return rejected


def mos_with_ci(matrix: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, count, std and 95 % t-interval per row over the entries where `used` is True."""
    m = np.where(used, matrix, np.nan)
    count = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(m, axis=1) if m.shape[1] else np.full(m.shape[0], np.nan)
        std = np.where(count >= 2, np.nanstd(m, axis=1, ddof=1), np.nan)
        t = np.where(count >= 2, stats.t.ppf(0.975, np.maximum(count - 1, 1)), np.nan)
        half = t * std / np.sqrt(np.maximum(count, 1))
    mean = np.where(count > 0, mean, np.nan)
    ci_low = np.clip(mean - half, 0.0, 1.0)
    ci_high = np.clip(mean + half, 0.0, 1.0)
    return mean, count, std, ci_low, ci_high


def bt500_consensus(matrix: np.ndarray) -> ConsensusResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty slices of unrated rows/columns are expected
        return _bt500_consensus(matrix)


def _bt500_consensus(matrix: np.ndarray) -> ConsensusResult:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError("ratings matrix must be 2-D (images x annotators)")
    present = ~np.isnan(m)
    normalised = normalise(m)
    rejected = screen(normalised)
    used = present & ~rejected[None, :]
    # An image whose every rater was rejected keeps all its ratings (a MOS from rejected raters beats none).
    nobody_left = (used.sum(axis=1) == 0) & (present.sum(axis=1) > 0)
    used[nobody_left] = present[nobody_left]
    mos, count, std, ci_low, ci_high = mos_with_ci(normalised, used)
    return ConsensusResult(
        mos=mos,
        count=count,
        std=std,
        ci_low=ci_low,
        ci_high=ci_high,
        rejected=rejected,
        rejected_per_image=present.sum(axis=1) - used.sum(axis=1),
    )
