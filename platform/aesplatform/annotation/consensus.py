"""Consensus scores of a campaign's images, by one of four methods (pure numpy/scipy + sureal, no Django).

Input: a ratings matrix of one dimension, shape (images, annotators), NaN where an annotator did not rate an
image (campaigns are incomplete designs: each image gets `redundancy` of many annotators).

Methods (`METHODS`; the campaign chooses one, every consensus row records it):

- "mean": the plain mean of the image's ratings.
- "bt500_mos": ITU-R BT.500 observer screening (below) on the raw scores, then the mean over the raters kept:
  the standard's own MOS.
- "bt500": per-annotator normalisation (below), screening on the normalised scores, then their mean. The
  platform's first method; its name stays "bt500" because frozen dataset versions and published exports say so.
  On small samples the normalisation moves even unanimous ratings (two raters who both gave 0.8 -> 0.7885).
- "p910_mle": the subject model of ITU-T P.910 Annex E / P.913 (Li & Bampis 2017): x_ij = psi_i + Delta_j +
  v_j * eps, fitted by maximum likelihood, which estimates each image's score together with each rater's bias
  Delta_j and inconsistency v_j, with confidence intervals from the Fisher information. Solved by the algorithm of
  Netflix's `sureal` (P910AnnexEModel), in numpy here, with a residual-degrees-of-freedom correction and a floor
  on v: as published, the algorithm collapses on designs with 3-5 raters per image (see `subject_model`). The
  tests check it against sureal itself.

1. Normalisation (per annotator): each annotator's scores are z-scored with the annotator's own mean and standard
   deviation, then mapped back onto the scale of all ratings (global mean and std), so that a harsh or a lenient
   annotator, or one who uses a narrow range, counts like everyone else. Annotators with fewer than
   `MIN_RATINGS_FOR_NORMALISATION` ratings, or with zero spread, are left as they are (their statistics would
   be noise). The result is clipped to [0, 1].
2. Screening (BT.500-14 Annex 2, §2.3.1): per image, mean, standard deviation and the
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

Every method also gives per-rater estimates (`RaterEstimates`): the model's bias and inconsistency for
"p910_mle"; for the other methods, and for raters the model has too little evidence about, the mean and the
spread of the rater's deviations from the other raters' mean on the same images.
"""

from __future__ import annotations

import contextlib
import os
import types
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

MIN_RATINGS_FOR_NORMALISATION = 5
MIN_RATINGS_FOR_SCREENING = 3
MIN_PAIRS_FOR_CORRELATION = 10
MIN_CORRELATION = 0.3

MEAN = "mean"
BT500_MOS = "bt500_mos"
BT500 = "bt500"  # the normalised variant (the platform's first method; the name is kept, see the module docstring)
P910_MLE = "p910_mle"
METHODS = (MEAN, BT500_MOS, BT500, P910_MLE)
METHOD_NAMES = {
    MEAN: "Plain mean",
    BT500_MOS: "ITU-R BT.500 screening, raw scores (the standard's MOS)",
    BT500: "ITU-R BT.500 screening on per-annotator normalised scores",
    P910_MLE: "Subject model, maximum likelihood (ITU-T P.910 Annex E; rater bias and inconsistency)",
}
# Chosen from bench/label_quality.py (docs/label-quality.md): the lowest RMSE against the truth with bad raters,
# and no worse than the plain mean when every rater is good.
DEFAULT_METHOD = P910_MLE
METHOD = BT500  # the method of the rows written before methods could be chosen (migration data)

# p910_mle: raters with fewer ratings than this are not fitted (their bias and inconsistency would be noise, and a
# rater whose few ratings fit exactly gets an inconsistency of 0, i.e. an infinite weight); they count with bias 0
# and the median inconsistency of the fitted raters.
MIN_RATINGS_FOR_MODEL = 10
INCONSISTENCY_FLOOR = 0.02  # no rater weighs more than one whose ratings scatter by 0.02 around their own bias
DOWNWEIGHT_RATIO = 0.25  # a rater is flagged "down-weighted" below a quarter of the median rater's weight
Z95 = float(stats.norm.ppf(0.975))


@dataclass
class RaterEstimates:
    """Per annotator (column): ratings, bias and inconsistency with 95 % intervals (NaN: not available), the
    weight relative to the median rater (1 for unweighted methods), and the method's verdicts."""

    count: np.ndarray
    bias: np.ndarray
    bias_ci_low: np.ndarray
    bias_ci_high: np.ndarray
    inconsistency: np.ndarray
    inconsistency_ci_low: np.ndarray
    inconsistency_ci_high: np.ndarray
    weight: np.ndarray
    modelled: np.ndarray  # bool: bias and inconsistency are the model's (False: deviations from the others)
    rejected: np.ndarray  # bool: the method left the rater's ratings out
    downweighted: np.ndarray  # bool: the method counts the rater's ratings much less than the median rater's


@dataclass
class ConsensusResult:
    mos: np.ndarray  # (images,) NaN where the image has no rating
    count: np.ndarray  # (images,) ratings used
    std: np.ndarray  # (images,) NaN when count < 2
    ci_low: np.ndarray
    ci_high: np.ndarray
    rejected: np.ndarray  # (annotators,) bool
    rejected_per_image: np.ndarray  # (images,) ratings left out because their annotator was rejected
    method: str = BT500
    raters: RaterEstimates | None = field(default=None, repr=False)


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


def _first(m: np.ndarray) -> np.ndarray:
    """Per row, the first value that is not NaN (0 for a row of NaN)."""
    present = ~np.isnan(m)
    first = np.argmax(present, axis=1)
    return np.where(present.any(axis=1), m[np.arange(m.shape[0]), first], 0.0)


def exact_mean(m: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per row, the (weighted) mean of the values that are not NaN, taken as first value + mean deviation from it:
    equal values give exactly that value (3 x 0.8 summed is 2.4000000000000004), so unanimous ratings stay put."""
    ref = _first(m)
    d = np.where(np.isnan(m), 0.0, m - ref[:, None])
    w = (~np.isnan(m)).astype(float) if weights is None else np.where(np.isnan(m), 0.0, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ref + (w * d).sum(axis=1) / w.sum(axis=1)


def mos_with_ci(matrix: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, count, std and 95 % t-interval per row over the entries where `used` is True."""
    m = np.where(used, matrix, np.nan)
    count = used.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = exact_mean(m) if m.shape[1] else np.full(m.shape[0], np.nan)
        std = np.where(count >= 2, np.nanstd(m, axis=1, ddof=1), np.nan)
        t = np.where(count >= 2, stats.t.ppf(0.975, np.maximum(count - 1, 1)), np.nan)
        half = t * std / np.sqrt(np.maximum(count, 1))
    mean = np.where(count > 0, mean, np.nan)
    ci_low = np.clip(mean - half, 0.0, 1.0)
    ci_high = np.clip(mean + half, 0.0, 1.0)
    return mean, count, std, ci_low, ci_high


def consensus(matrix: np.ndarray, method: str = DEFAULT_METHOD) -> ConsensusResult:
    """The consensus of one dimension's ratings matrix by `method` (one of METHODS), with per-rater estimates."""
    if method not in METHODS:
        raise ValueError(f"unknown consensus method {method!r}; expected one of {', '.join(METHODS)}")
    m = _checked(matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty slices of unrated rows/columns are expected
        if method == P910_MLE:
            return p910_mle_consensus(m)
        if method == MEAN:
            result = _screened_mos(m, m, np.zeros(m.shape[1], dtype=bool))
        elif method == BT500_MOS:
            result = _screened_mos(m, m, screen(m))
        else:
            normalised = normalise(m)
            result = _screened_mos(m, normalised, screen(normalised))
        result.method = method
        result.raters = deviation_estimates(m, rejected=result.rejected)
        return result


def _checked(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError("ratings matrix must be 2-D (images x annotators)")
    return m


def bt500_consensus(matrix: np.ndarray) -> ConsensusResult:
    """The "bt500" method (normalisation, screening, MOS)."""
    return consensus(matrix, BT500)


def _screened_mos(m: np.ndarray, scores: np.ndarray, rejected: np.ndarray) -> ConsensusResult:
    """MOS over the ratings (of `scores`) of the raters not rejected."""
    present = ~np.isnan(m)
    used = present & ~rejected[None, :]
    # An image whose every rater was rejected keeps all its ratings (a MOS from rejected raters beats none).
    nobody_left = (used.sum(axis=1) == 0) & (present.sum(axis=1) > 0)
    used[nobody_left] = present[nobody_left]
    mos, count, std, ci_low, ci_high = mos_with_ci(scores, used)
    return ConsensusResult(
        mos=mos,
        count=count,
        std=std,
        ci_low=ci_low,
        ci_high=ci_high,
        rejected=rejected,
        rejected_per_image=present.sum(axis=1) - used.sum(axis=1),
    )


def deviation_estimates(matrix: np.ndarray, *, rejected: np.ndarray | None = None) -> RaterEstimates:
    """Per rater, from the images the rater shares with others: bias = the mean deviation d_ij = x_ij - (the mean
    of the other raters of image i), with a t-interval; inconsistency = the deviations' sample std, with a
    chi-square interval. (The others' mean has noise of its own, so the inconsistency is an upper estimate.)"""
    m = _checked(matrix)
    n_raters = m.shape[1]
    present = ~np.isnan(m)
    values = np.where(present, m, 0.0)
    row_sum, row_count = values.sum(axis=1), present.sum(axis=1)
    rows, cols = np.nonzero(present & (row_count >= 2)[:, None])
    own = m[rows, cols]
    d = own - (row_sum[rows] - own) / (row_count[rows] - 1)
    n = np.bincount(cols, minlength=n_raters).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = np.bincount(cols, weights=d, minlength=n_raters) / n
        ss = np.bincount(cols, weights=(d - bias[cols]) ** 2, minlength=n_raters)
        sd = np.where(n >= 2, np.sqrt(ss / (n - 1)), np.nan)
        dof = np.maximum(n - 1, 1)
        half = stats.t.ppf(0.975, dof) * sd / np.sqrt(n)
        inc_lo = sd * np.sqrt((n - 1) / stats.chi2.ppf(0.975, dof))
        inc_hi = sd * np.sqrt((n - 1) / stats.chi2.ppf(0.025, dof))
    bias = np.where(n > 0, bias, np.nan)
    no = np.zeros(n_raters, dtype=bool)
    return RaterEstimates(
        count=present.sum(axis=0), bias=bias, bias_ci_low=bias - half, bias_ci_high=bias + half, inconsistency=sd,
        inconsistency_ci_low=inc_lo, inconsistency_ci_high=inc_hi, weight=np.ones(n_raters), modelled=no.copy(),
        rejected=no.copy() if rejected is None else np.asarray(rejected, dtype=bool), downweighted=no.copy(),
    )


@dataclass
class SubjectModelFit:
    scores: np.ndarray  # (images,) psi
    bias: np.ndarray  # (raters,) Delta, zero mean
    inconsistency: np.ndarray  # (raters,) v, before the floor
    iterations: int


def subject_model(matrix: np.ndarray, *, dof_correction: bool = True, floor: float = INCONSISTENCY_FLOOR,
                  max_iter: int = 1000, tol: float = 1e-8) -> SubjectModelFit:
    """The subject model x_ij = psi_i + Delta_j + v_j * eps (image i, rater j) by ITU-T P.910 Annex E's alternating
    projections, as sureal's P910AnnexEModel solves it: psi = the images' means, Delta = the raters' mean
    residuals; then repeat: v_j = the RMS of rater j's residuals x - psi - Delta, psi_i = the mean of x_ij - Delta_j
    weighted by w_j = 1 / v_j^2, Delta_j = the mean of x_ij - psi_i, until psi moves by less than `tol`; the
    biases are finally shifted to a zero mean (and the scores by the same amount).

    With `dof_correction=False, floor=0` this is sureal's algorithm exactly (its weights are 1 / (v^2 + 1e-8));
    tests check it against sureal. The defaults differ in two ways, because on campaign designs (3-5 raters per
    image) the plain algorithm collapses: a rater's weight makes the scores follow that rater, whose residuals then
    shrink, whose weight grows, until v_j ~ 0 and the scores are that one rater's ratings (sureal does this on a
    40-image, 4-rater matrix: tests/unit/test_consensus_methods.py). So:
    - `dof_correction`: v_j^2 = sum_i r_ij^2 / sum_i (1 - h_ij), where h_ij = w_j / sum_k w_k is rater j's share of
      image i's score (a residual of a weighted mean has variance v_j^2 (1 - h_ij), not v_j^2): the
      residual-maximum-likelihood estimate of the variance. It equals the plain one when panels are large.
    - `floor`: the weights use max(v_j, floor)."""
    m = _checked(matrix)
    n_images, n_raters = m.shape
    rows, cols = np.nonzero(~np.isnan(m))  # one entry per rating: the work is linear in the ratings
    x = m[rows, cols]

    def per_image(values):
        return np.bincount(rows, weights=values, minlength=n_images)

    def per_rater(values):
        return np.bincount(cols, weights=values, minlength=n_raters)

    n_rater = np.maximum(np.bincount(cols, minlength=n_raters), 1)
    scores = per_image(x) / np.maximum(np.bincount(rows, minlength=n_images), 1)
    bias = per_rater(x - scores[rows]) / n_rater
    weights = np.ones(n_raters)
    inconsistency = np.zeros(n_raters)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        previous = scores
        residual2 = per_rater((x - scores[rows] - bias[cols]) ** 2)
        if dof_correction:
            w = weights[cols]
            share = w / np.maximum(per_image(w)[rows], 1e-300)
            dof = np.maximum(per_rater(1.0 - share), 0.5)
        else:
            dof = n_rater
        inconsistency = np.sqrt(residual2 / dof)
        weights = 1.0 / np.maximum(inconsistency, floor) ** 2 if floor > 0 else 1.0 / (inconsistency**2 + 1e-8)
        w = weights[cols]
        scores = per_image(w * (x - bias[cols])) / np.maximum(per_image(w), 1e-300)
        bias = per_rater(x - scores[rows]) / n_rater
        if np.linalg.norm(previous - scores) < tol:
            break
    shift = bias.mean()
    return SubjectModelFit(scores=scores + shift, bias=bias - shift, inconsistency=inconsistency,
                           iterations=iterations)


def sureal_subject_model(matrix: np.ndarray) -> dict:
    """Netflix sureal's P910AnnexEModel (the reference implementation of `subject_model`, used by the tests and the
    bench; sureal is a development dependency) on a dense (images, raters) matrix with NaN for the missing ratings.
    Returns sureal's result dict (quality_scores, observer_bias, observer_inconsistency, ...). The library prints
    every iteration to stdout: that goes to /dev/null."""
    from sureal import P910AnnexEModel
    from sureal.dataset_reader import RawDatasetReader

    m = _checked(matrix)
    dataset = types.SimpleNamespace(
        dataset_name="campaign", yuv_fmt="yuv420p", width=1, height=1, quality_width=1, quality_height=1,
        ref_videos=[{"content_id": 0, "content_name": "images", "path": "-"}],
        dis_videos=[{"content_id": 0, "asset_id": i, "path": str(i), "os": [float(v) for v in row]}
                    for i, row in enumerate(m)],
    )
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return P910AnnexEModel(RawDatasetReader(dataset)).run_modeling()


def partial_pooling(matrix: np.ndarray, fit: SubjectModelFit, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The raters' biases and inconsistencies the consensus uses: the model's, pulled towards the panel as far as
    the panel shows no real differences between raters (empirical Bayes). With raters who differ only by chance,
    estimating a bias and a weight per rater adds noise and the plain mean is better (bench/label_quality.py,
    "identical" raters: +10 % RMSE at redundancy 3 without this); with raters who really differ, nothing changes.

    How much the raters really differ is read from their deviations from the other raters of the same images
    (`deviation_estimates`: no feedback from the fit): the variance of the raters' mean deviations beyond their
    sampling variance (tau^2), and that of the log variances of their deviations beyond 2 / (n - 1) (between).
    Then bias_j = Delta_j * tau^2 / (tau^2 + v_j^2 / n_j) and log v_j^2 is pulled towards the raters' mean log
    variance by between / (between + 2 / (n_j - 1)). v is floored at INCONSISTENCY_FLOOR first."""
    dev = deviation_estimates(matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d_var = dev.inconsistency**2
        d_n = np.maximum(dev.count, 2).astype(float)
        tau2 = max(float(np.nanvar(dev.bias) - np.nanmean(d_var / d_n)), 0.0)
        log_d = np.log(np.maximum(d_var, 1e-12))
        between = max(float(np.nanvar(log_d) - np.nanmean(2.0 / (d_n - 1))), 0.0)
    tau2 = tau2 if np.isfinite(tau2) else 0.0
    between = between if np.isfinite(between) else 0.0
    v = np.maximum(fit.inconsistency, INCONSISTENCY_FLOOR)
    bias = fit.bias * (tau2 / (tau2 + v**2 / n)) if tau2 > 0 else np.zeros_like(fit.bias)
    log_v2 = np.log(v**2)
    pull = between / (between + 2.0 / np.maximum(n - 1, 1))
    log_v2 = log_v2.mean() + pull * (log_v2 - log_v2.mean())
    return bias, np.sqrt(np.exp(log_v2))


def p910_mle_consensus(matrix: np.ndarray) -> ConsensusResult:
    """The subject model (`subject_model`) fitted on the raters with enough ratings, then the image scores as the
    model defines them: psi_i = sum_j w_j (x_ij - Delta_j) / sum_j w_j, w_j = 1 / v_j^2 (pooled, see below), with the
    standard error 1 / sqrt(sum_j w_j) (Fisher information) and a normal 95 % interval. The raters' intervals,
    as sureal gives them: Delta_j +- 1.96 max(v_j, floor) / sqrt(n_j), and v_j * sqrt(n_j / chi2(0.975 / 0.025, n_j)).

    - Only raters with at least MIN_RATINGS_FOR_MODEL ratings are fitted (and only the images they rated): with
      fewer, a rater's estimates are noise. The others count with bias 0 and the median weight of the fitted
      raters: the model has no evidence about them, so unanimous ratings of theirs stay where they are.
    - With fewer than two fitted raters there is no model (biases are relative to the others): the plain mean.
    - The raters' estimates are partially pooled (`partial_pooling`) before they are used.
    The scores are clipped to [0, 1]. A rater is "down-weighted" below DOWNWEIGHT_RATIO of the median weight."""
    m = _checked(matrix)
    n_images, n_raters = m.shape
    present = ~np.isnan(m)
    counts = present.sum(axis=0)
    fitted = counts >= MIN_RATINGS_FOR_MODEL
    raters = deviation_estimates(m)
    if fitted.sum() < 2:
        plain = _screened_mos(m, m, np.zeros(n_raters, dtype=bool))
        plain.method, plain.raters = P910_MLE, raters
        return plain
    rows = present[:, fitted].any(axis=1)
    sub = m[np.ix_(rows, fitted)]
    fit = subject_model(sub)
    n = counts[fitted].astype(float)
    fitted_bias, fitted_v = partial_pooling(sub, fit, n)
    bias = np.zeros(n_raters)
    inconsistency = np.full(n_raters, np.nan)
    bias[fitted] = fitted_bias
    inconsistency[fitted] = fitted_v
    w = np.zeros(n_raters)
    w[fitted] = 1.0 / fitted_v**2
    w[~fitted] = float(np.median(w[fitted]))  # the raters the model knows nothing about: the median weight
    weights = np.where(present, w[None, :], 0.0)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = exact_mean(m - bias[None, :], weights)
        se = 1.0 / np.sqrt(total)
    rated = present.any(axis=1)
    psi = np.where(rated, np.clip(psi, 0.0, 1.0), np.nan)
    se = np.where(rated, se, np.nan)

    half = Z95 * fitted_v / np.sqrt(n)  # 1.96 / sqrt(sum of w over the rater's ratings): the Fisher information
    raters.bias[fitted] = bias[fitted]
    raters.bias_ci_low[fitted] = bias[fitted] - half
    raters.bias_ci_high[fitted] = bias[fitted] + half
    raters.inconsistency[fitted] = inconsistency[fitted]
    raters.inconsistency_ci_low[fitted] = inconsistency[fitted] * np.sqrt(n / stats.chi2.ppf(0.975, n))
    raters.inconsistency_ci_high[fitted] = inconsistency[fitted] * np.sqrt(n / stats.chi2.ppf(0.025, n))
    raters.modelled = fitted
    raters.weight = w / float(np.median(w[fitted]))
    raters.downweighted = fitted & (raters.weight < DOWNWEIGHT_RATIO)
    return ConsensusResult(
        mos=psi, count=present.sum(axis=1), std=se,
        ci_low=np.clip(psi - Z95 * se, 0.0, 1.0), ci_high=np.clip(psi + Z95 * se, 0.0, 1.0),
        rejected=np.zeros(n_raters, dtype=bool), rejected_per_image=np.zeros(n_images, dtype=int),
        method=P910_MLE, raters=raters,
    )
