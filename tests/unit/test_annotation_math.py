"""Consensus and agreement against values computed independently here (scipy, the krippendorff package, loops)."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from scipy import stats

from aesplatform.annotation import agreement, consensus


def _incomplete_matrix(seed=0, images=40, annotators=8, per_image=3, noise=0.08):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.1, 0.9, images)
    m = np.full((images, annotators), np.nan)
    bias = rng.normal(0, 0.05, annotators)
    for i in range(images):
        for j in rng.choice(annotators, per_image, replace=False):
            m[i, j] = np.clip(truth[i] + bias[j] + rng.normal(0, noise), 0, 1)
    return m


def test_krippendorff_alpha_matches_the_krippendorff_package():
    for seed in range(3):
        m = _incomplete_matrix(seed)
        expected = krippendorff.alpha(reliability_data=m.T, level_of_measurement="interval")
        assert agreement.krippendorff_alpha_interval(m) == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_undefined_without_pairs():
    m = np.array([[0.5, np.nan], [np.nan, 0.2]])
    assert agreement.krippendorff_alpha_interval(m) is None


def _icc1_by_loops(m):
    groups = [row[~np.isnan(row)] for row in m if (~np.isnan(row)).sum() >= 2]
    a = len(groups)
    n_total = sum(len(g) for g in groups)
    grand = sum(g.sum() for g in groups) / n_total
    ssb = sum(len(g) * (g.mean() - grand) ** 2 for g in groups)
    ssw = sum(((g - g.mean()) ** 2).sum() for g in groups)
    msb, msw = ssb / (a - 1), ssw / (n_total - a)
    n0 = (n_total - sum(len(g) ** 2 for g in groups) / n_total) / (a - 1)
    return (msb - msw) / (msb + (n0 - 1) * msw), (msb - msw) / msb


def test_icc_oneway_matches_an_anova_by_hand():
    m = _incomplete_matrix(1)
    m[0, :] = np.nan  # an unrated image is ignored
    m[1, :] = np.nan
    m[1, 0] = 0.4  # a single rating too
    icc1, icc1k = _icc1_by_loops(m)
    got = agreement.icc_oneway(m)
    assert got.icc1 == pytest.approx(icc1, abs=1e-12)
    assert got.icc1k == pytest.approx(icc1k, abs=1e-12)
    assert got.items == 38


def test_icc_oneway_with_equal_groups_matches_scipy_f_oneway():
    """With equal group sizes, ICC(1,k) = 1 - 1/F of the one-way ANOVA."""
    rng = np.random.default_rng(5)
    m = np.clip(rng.uniform(0.2, 0.8, (30, 1)) + rng.normal(0, 0.1, (30, 4)), 0, 1)
    f, _ = stats.f_oneway(*m)  # groups = items
    assert agreement.icc_oneway(m).icc1k == pytest.approx(1 - 1 / f, abs=1e-9)


def test_icc_2_1_matches_shrout_fleiss_reference():
    # Shrout & Fleiss (1979) table 2: 6 targets, 4 judges; ICC(2,1) = 0.29, ICC(1,1) = 0.17
    data = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float)
    assert agreement.icc_2_1(data) == pytest.approx(0.2898, abs=1e-3)
    assert agreement.icc_oneway(data).icc1 == pytest.approx(0.1657, abs=1e-3)
    with pytest.raises(ValueError):
        agreement.icc_2_1(np.array([[1.0, np.nan], [2.0, 3.0]]))


def _bt500_by_hand(m, normalise=True):
    """An independent, loop-based implementation of the documented method (without the normalisation: the
    standard's own MOS, method bt500_mos)."""
    m = m.copy()
    present = ~np.isnan(m)
    allv = m[present]
    g_mean, g_std = allv.mean(), allv.std(ddof=1)
    norm = m.copy()
    for j in range(m.shape[1] if normalise else 0):
        col = m[present[:, j], j]
        if len(col) >= consensus.MIN_RATINGS_FOR_NORMALISATION and col.std(ddof=1) > 1e-9:
            norm[present[:, j], j] = np.clip((col - col.mean()) / col.std(ddof=1) * g_std + g_mean, 0, 1)
    p = np.zeros(m.shape[1])
    q = np.zeros(m.shape[1])
    n = np.zeros(m.shape[1])
    for i in range(m.shape[0]):
        idx = np.flatnonzero(present[i])
        if len(idx) < consensus.MIN_RATINGS_FOR_SCREENING:
            continue
        v = norm[i, idx]
        mean, std = v.mean(), v.std(ddof=1)
        beta2 = stats.kurtosis(v, fisher=False, bias=True) if v.var() > 0 else 0.0
        k = 2.0 if 2 <= beta2 <= 4 else math.sqrt(20)
        for j, x in zip(idx, v):
            n[j] += 1
            if x > mean + k * std:
                p[j] += 1
            if x < mean - k * std:
                q[j] += 1
    rejected = np.array(
        [
            n[j] > 0 and (p[j] + q[j]) / n[j] > 0.05 and (p[j] + q[j]) > 0 and abs(p[j] - q[j]) / (p[j] + q[j]) < 0.3
            for j in range(m.shape[1])
        ]
    )
    for j in range(m.shape[1]):  # correlation with the leave-one-out mean, on the normalised scores
        pairs = [
            (norm[i, j], np.mean([norm[i, k] for k in range(m.shape[1]) if k != j and present[i, k]]))
            for i in range(m.shape[0])
            if present[i, j] and present[i].sum() >= 2
        ]
        if len(pairs) >= consensus.MIN_PAIRS_FOR_CORRELATION:
            r = stats.pearsonr([a for a, _ in pairs], [b for _, b in pairs])[0]
            rejected[j] = rejected[j] or r < consensus.MIN_CORRELATION
    out = []
    for i in range(m.shape[0]):
        idx = [j for j in np.flatnonzero(present[i]) if not rejected[j]] or list(np.flatnonzero(present[i]))
        v = norm[i, idx]
        if len(v) >= 2:
            sd = v.std(ddof=1)
            half = stats.t.ppf(0.975, len(v) - 1) * sd / math.sqrt(len(v))
            out.append((v.mean(), len(v), sd, max(v.mean() - half, 0), min(v.mean() + half, 1)))
        else:
            out.append((v.mean(), len(v), None, None, None))
    return rejected, out


def test_bt500_consensus_matches_an_independent_computation_and_rejects_an_outlier():
    rng = np.random.default_rng(3)
    images, annotators = 30, 6
    truth = rng.uniform(0.2, 0.8, images)
    m = np.clip(truth[:, None] + rng.normal(0, 0.05, (images, annotators)), 0, 1)
    # annotator 5 answers at random, far from everyone else
    m[:, 5] = np.where(rng.random(images) < 0.5, 0.0, 1.0)
    m[rng.random((images, annotators)) < 0.15] = np.nan  # incomplete design
    result = consensus.bt500_consensus(m)
    rejected, expected = _bt500_by_hand(m)
    assert rejected[5] and result.rejected[5]
    assert list(result.rejected) == list(rejected)
    for i, (mos, count, sd, lo, hi) in enumerate(expected):
        assert result.mos[i] == pytest.approx(mos, abs=1e-9)
        assert result.count[i] == count
        if sd is None:
            assert np.isnan(result.std[i])
        else:
            assert result.std[i] == pytest.approx(sd, abs=1e-9)
            assert result.ci_low[i] == pytest.approx(lo, abs=1e-9)
            assert result.ci_high[i] == pytest.approx(hi, abs=1e-9)
    # the MOS after screening is closer to the truth than the plain mean
    plain = np.nanmean(m, axis=1)
    assert np.abs(result.mos - truth).mean() < np.abs(plain - truth).mean()


def test_mos_ci_matches_scipy_t_interval_without_normalisation():
    """Few ratings per annotator: no normalisation, so MOS and CI are the plain t-interval of each image."""
    m = np.array([[0.2, 0.3, 0.4, np.nan], [0.9, np.nan, 0.7, 0.8], [0.5, np.nan, np.nan, np.nan]])
    result = consensus.bt500_consensus(m)
    for i in range(2):
        v = m[i][~np.isnan(m[i])]
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        assert result.mos[i] == pytest.approx(v.mean())
        assert result.ci_low[i] == pytest.approx(max(lo, 0))
        assert result.ci_high[i] == pytest.approx(min(hi, 1))
    assert result.mos[2] == 0.5 and result.count[2] == 1 and np.isnan(result.ci_low[2])


def test_annotator_quality_against_a_direct_computation():
    m = _incomplete_matrix(7, images=50, annotators=5)
    gold = np.full(50, np.nan)
    gold[:10] = np.round(np.nanmean(m[:10], axis=1), 2)
    rows = agreement.annotator_quality(m, gold)
    for j, row in enumerate(rows):
        own, others = [], []
        for i in range(50):
            if np.isnan(m[i, j]):
                continue
            rest = [m[i, k] for k in range(5) if k != j and not np.isnan(m[i, k])]
            if rest:
                own.append(m[i, j])
                others.append(np.mean(rest))
        assert row.loo_correlation == pytest.approx(stats.pearsonr(own, others)[0], abs=1e-9)
        mine = [(m[i, j], gold[i]) for i in range(10) if not np.isnan(m[i, j])]
        assert row.gold_count == len(mine)
        if mine:
            assert row.gold_mae == pytest.approx(np.mean([abs(a - b) for a, b in mine]))
