"""The consensus methods (issue 18) against independent computations on small fixed matrices: the plain mean, the
BT.500 MOS without normalisation, the subject model (ITU-T P.910 Annex E) against sureal and a loop-based
implementation of its published algorithm (and where sureal's solver falls short); unanimous ratings preserved
where the method has no evidence about the raters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aesplatform.annotation import consensus
from tests.unit.test_annotation_math import _bt500_by_hand


def _design(seed, images=30, raters=4, per_image=3, noise=(0.04, 0.06, 0.08, 0.12), bias=(0.08, -0.05, 0.0, -0.03)):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.2, 0.8, images)
    m = np.full((images, raters), np.nan)
    for i in range(images):
        for j in rng.choice(raters, per_image, replace=False):
            m[i, j] = np.clip(truth[i] + bias[j] + rng.normal(0, noise[j]), 0, 1)
    return m, truth


def _p910_by_hand(x, corrected=False, floor=0.02):
    """ITU-T P.910 Annex E as sureal publishes it (SubjectMLEModelProjectionSolver), in loops: s = per-image mean,
    b = per-rater mean residual; then repeat: v_j = RMS of rater j's residuals x - s - b, s_i = the mean of
    x_ij - b_j weighted by 1 / (v_j^2 + 1e-8), b_j = mean of x_ij - s_i, until s moves by less than 1e-8;
    finally the biases are shifted to a zero mean (and the scores by the same amount).
    `corrected`: the platform's variant: v_j^2 = sum r^2 / sum (1 - w_j / sum_k w_k), weights 1 / max(v, floor)^2."""
    n_images, n_raters = x.shape
    rated = [[j for j in range(n_raters) if not np.isnan(x[i, j])] for i in range(n_images)]
    rates = [[i for i in range(n_images) if not np.isnan(x[i, j])] for j in range(n_raters)]
    s = np.array([np.mean([x[i, j] for j in rated[i]]) for i in range(n_images)])
    b = np.array([np.mean([x[i, j] - s[i] for i in rates[j]]) for j in range(n_raters)])
    w = np.ones(n_raters)
    for _ in range(1000):
        previous = s.copy()
        v = np.zeros(n_raters)
        for j in range(n_raters):
            r2 = sum((x[i, j] - s[i] - b[j]) ** 2 for i in rates[j])
            dof = sum(1 - w[j] / sum(w[k] for k in rated[i]) for i in rates[j]) if corrected else len(rates[j])
            v[j] = math.sqrt(r2 / max(dof, 0.5))
        w = 1.0 / np.maximum(v, floor) ** 2 if corrected else 1.0 / (v**2 + 1e-8)
        s = np.array([sum(w[j] * (x[i, j] - b[j]) for j in rated[i]) / sum(w[j] for j in rated[i])
                      for i in range(n_images)])
        b = np.array([np.mean([x[i, j] - s[i] for i in rates[j]]) for j in range(n_raters)])
        if np.linalg.norm(previous - s) < 1e-8:
            break
    shift = b.mean()
    return s + shift, b - shift, v


def test_the_solver_without_its_corrections_is_sureals_algorithm():
    for seed in (1, 5, 8):
        m, _ = _design(seed=seed, images=30)
        ours = consensus.subject_model(m, dof_correction=False, floor=0)
        reference = consensus.sureal_subject_model(m)
        by_hand = _p910_by_hand(m)
        assert ours.scores == pytest.approx(np.array(reference["quality_scores"]), abs=1e-9)
        assert ours.bias == pytest.approx(np.array(reference["observer_bias"]), abs=1e-9)
        assert ours.inconsistency == pytest.approx(np.array(reference["observer_inconsistency"]), abs=1e-9)
        assert ours.scores == pytest.approx(by_hand[0], abs=1e-9)


def test_sureal_collapses_onto_one_rater_of_a_small_panel_and_the_corrected_model_does_not():
    m, truth = _design(seed=5, images=40)  # 4 raters, 3 per image: true noise 0.04, 0.06, 0.08, 0.12
    reference = consensus.sureal_subject_model(m)
    assert reference["observer_inconsistency"][0] < 1e-3  # the scores follow rater 0 alone
    fit = consensus.subject_model(m)
    assert (fit.inconsistency > 0.015).all()
    assert np.argsort(fit.inconsistency).tolist() == [0, 1, 2, 3]
    assert np.sqrt(np.mean((fit.scores - truth) ** 2)) < np.sqrt(np.mean((np.array(reference["quality_scores"])
                                                                         - truth) ** 2))


def test_plain_mean_is_the_mean_and_the_t_interval_of_each_image():
    m = np.array([[0.2, 0.3, 0.4, np.nan], [0.9, np.nan, 0.7, 0.8], [0.5, np.nan, np.nan, np.nan], [np.nan] * 4])
    result = consensus.consensus(m, consensus.MEAN)
    for i in range(2):
        v = m[i][~np.isnan(m[i])]
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        assert result.mos[i] == pytest.approx(v.mean())
        assert (result.ci_low[i], result.ci_high[i]) == pytest.approx((max(lo, 0), min(hi, 1)))
    assert result.mos[2] == 0.5 and np.isnan(result.ci_low[2]) and np.isnan(result.mos[3])
    assert result.method == "mean" and not result.rejected.any()


def test_bt500_mos_screens_the_raw_scores_as_an_independent_computation_does():
    rng = np.random.default_rng(3)
    images, annotators = 30, 6
    truth = rng.uniform(0.2, 0.8, images)
    m = np.clip(truth[:, None] + rng.normal(0, 0.05, (images, annotators)), 0, 1)
    m[:, 5] = np.where(rng.random(images) < 0.5, 0.0, 1.0)  # a rater answering at random
    m[rng.random((images, annotators)) < 0.15] = np.nan
    result = consensus.consensus(m, consensus.BT500_MOS)
    rejected, expected = _bt500_by_hand(m, normalise=False)
    assert rejected[5] and list(result.rejected) == list(rejected)
    for i, (mos, count, sd, lo, hi) in enumerate(expected):
        assert result.mos[i] == pytest.approx(mos, abs=1e-12) and result.count[i] == count
        if sd is not None:
            assert (result.std[i], result.ci_low[i], result.ci_high[i]) == pytest.approx((sd, lo, hi), abs=1e-12)
    assert result.raters.rejected[5] and result.method == "bt500_mos"


def _pooled_by_hand(m, bias, inconsistency):
    """The partial pooling, in loops, from the raters' deviations (checked against a loop below)."""
    dev = consensus.deviation_estimates(m)
    n = (~np.isnan(m)).sum(axis=0).astype(float)
    tau2 = max(np.var(dev.bias) - np.mean(dev.inconsistency**2 / n), 0.0)
    log_d = [math.log(d**2) for d in dev.inconsistency]
    between = max(np.var(log_d) - np.mean(2 / (n - 1)), 0.0)
    v = np.maximum(inconsistency, consensus.INCONSISTENCY_FLOOR)
    pooled_bias = [b * tau2 / (tau2 + v[j] ** 2 / n[j]) for j, b in enumerate(bias)]
    mean_log = np.mean([math.log(x**2) for x in v])
    pooled_v = [math.sqrt(math.exp(mean_log + between / (between + 2 / (n[j] - 1)) * (math.log(v[j] ** 2) - mean_log)))
                for j in range(len(v))]
    return np.array(pooled_bias), np.array(pooled_v)


def test_the_subject_model_consensus_matches_an_independent_computation_and_recovers_the_raters():
    m, truth = _design(seed=5, images=40)
    _, fitted_bias, fitted_v = _p910_by_hand(m, corrected=True)
    bias, inconsistency = _pooled_by_hand(m, fitted_bias, fitted_v)
    w = 1 / inconsistency**2
    scores = [sum(w[j] * (m[i, j] - bias[j]) for j in range(4) if not np.isnan(m[i, j]))
              / sum(w[j] for j in range(4) if not np.isnan(m[i, j])) for i in range(m.shape[0])]
    result = consensus.consensus(m, consensus.P910_MLE)
    assert result.method == "p910_mle"
    assert result.mos == pytest.approx(np.clip(scores, 0, 1), abs=1e-6)
    assert result.raters.bias == pytest.approx(bias, abs=1e-6)
    assert result.raters.inconsistency == pytest.approx(inconsistency, abs=1e-6)
    assert result.raters.modelled.all()
    n = (~np.isnan(m)).sum(axis=0)
    assert result.raters.inconsistency_ci_high == pytest.approx(inconsistency * np.sqrt(n / stats.chi2.ppf(0.025, n)))
    # standard error from the Fisher information: 1 / sqrt(sum of the weights of the image's raters)
    i = 0
    se = 1 / np.sqrt(w[~np.isnan(m[i])].sum())
    assert result.std[i] == pytest.approx(se)
    assert result.ci_low[i] == pytest.approx(max(result.mos[i] - 1.959964 * se, 0), abs=1e-5)
    # the biases are relative to the raters' mean; the least consistent rater weighs least
    assert bias[0] > bias[1] and np.argmin(result.raters.weight) == 3
    assert all(lo <= b <= hi for lo, b, hi in zip(result.raters.bias_ci_low, bias, result.raters.bias_ci_high))
    # closer to the truth than the plain mean (the raters' biases are taken out)
    plain = consensus.consensus(m, consensus.MEAN).mos
    assert np.abs(result.mos - truth).mean() < np.abs(plain - truth).mean()


def test_raters_who_differ_only_by_chance_get_the_plain_mean():
    """Identical unbiased raters: the pooling finds no real differences, so no bias is taken out and every rater
    weighs the same: the plain mean (estimating them would only add noise)."""
    rng = np.random.default_rng(11)
    truth = rng.uniform(0.2, 0.8, 200)
    m = np.full((200, 20), np.nan)
    for i in range(200):
        for j in rng.choice(20, 3, replace=False):
            m[i, j] = truth[i] + rng.normal(0, 0.08)
    result = consensus.consensus(m, consensus.P910_MLE)
    assert result.raters.modelled.all()
    assert result.mos == pytest.approx(np.clip(np.nanmean(m, axis=1), 0, 1), abs=1e-3)


def test_unanimous_ratings_stay_where_they_are_when_the_method_has_no_evidence_about_the_raters():
    """The issue's campaign: 6 images, 2 annotators; both gave 0.8 to one image and 1.0 to another."""
    m = np.array([[0.8, 0.8], [0.5, 0.6], [0.3, 0.2], [1.0, 1.0], [0.6, 0.7], [0.4, 0.4]])
    for method in (consensus.MEAN, consensus.BT500_MOS, consensus.P910_MLE):
        result = consensus.consensus(m, method)
        assert (result.mos[0], result.mos[3], result.mos[5]) == (0.8, 1.0, 0.4), method
    three = np.array([[0.8, 0.8, 0.8, np.nan], [0.6, np.nan, 0.6, 0.6]])  # 0.8 + 0.8 + 0.8 = 2.4000000000000004
    for method in (consensus.MEAN, consensus.BT500_MOS, consensus.P910_MLE):
        assert consensus.consensus(three, method).mos.tolist() == [0.8, 0.6], method
    # the normalised variant moves them (fitted on 6 ratings): why it is no longer the default
    assert consensus.consensus(m, consensus.BT500).mos[0] != pytest.approx(0.8, abs=1e-3)


def test_new_raters_count_with_no_bias_and_the_median_weight_in_the_subject_model():
    m, _ = _design(seed=2, images=40)
    n_images = m.shape[0]
    # two newcomers (3 ratings each) agree on a new image, and one of them rated an old image far off
    extra = np.full((n_images + 1, 2), np.nan)
    extra[n_images, :] = 0.8
    extra[0, 0] = 0.0
    extra[1, 1] = 0.9
    extra[2, :] = 0.5
    grown = np.vstack([m, np.full((1, m.shape[1]), np.nan)])
    grown = np.hstack([grown, extra])
    result = consensus.consensus(grown, consensus.P910_MLE)
    assert result.mos[n_images] == 0.8  # unanimous, and the model knows nothing about them
    assert not result.raters.modelled[-2:].any() and (result.raters.weight[-2:] == 1.0).all()
    # image 0: the newcomer's 0.0 weighs like the median rater (never an infinite weight), with no bias taken out
    fitted = result.raters.modelled
    w_fitted = 1 / np.maximum(result.raters.inconsistency, consensus.INCONSISTENCY_FLOOR) ** 2
    rated = ~np.isnan(grown[0])
    w = np.where(fitted, w_fitted, np.median(w_fitted[fitted]))[rated]
    b = np.where(fitted, result.raters.bias, 0.0)[rated]
    assert result.mos[0] == pytest.approx(np.clip((w * (grown[0, rated] - b)).sum() / w.sum(), 0, 1))


def test_rater_deviations_match_a_loop():
    m, _ = _design(seed=9)
    est = consensus.deviation_estimates(m)
    for j in range(m.shape[1]):
        d = [m[i, j] - np.nanmean(np.delete(m[i], j)) for i in range(m.shape[0])
             if not np.isnan(m[i, j]) and (~np.isnan(m[i])).sum() >= 2]
        n = len(d)
        assert est.bias[j] == pytest.approx(np.mean(d))
        half = stats.t.ppf(0.975, n - 1) * np.std(d, ddof=1) / np.sqrt(n)
        assert (est.bias_ci_low[j], est.bias_ci_high[j]) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
        assert est.inconsistency[j] == pytest.approx(np.std(d, ddof=1))
        lo = np.std(d, ddof=1) * np.sqrt((n - 1) / stats.chi2.ppf(0.975, n - 1))
        assert est.inconsistency_ci_low[j] == pytest.approx(lo) and est.inconsistency_ci_high[j] > est.inconsistency[j]


def test_every_method_flags_the_spammer_its_own_way_and_unknown_methods_are_refused():
    rng = np.random.default_rng(4)
    m, _ = _design(seed=4, images=60, raters=4)
    m = np.hstack([m, np.full((60, 1), np.nan)])
    rows = rng.choice(60, 30, replace=False)
    m[rows, 4] = rng.uniform(0, 1, 30)  # a spammer
    assert consensus.consensus(m, consensus.BT500_MOS).raters.rejected[4]
    mle = consensus.consensus(m, consensus.P910_MLE).raters
    assert mle.downweighted[4] and not mle.downweighted[:4].any() and not mle.rejected.any()
    with pytest.raises(ValueError, match="unknown consensus method"):
        consensus.consensus(m, "median")
