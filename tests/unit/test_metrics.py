"""Tests for :mod:`edgevcf.metrics`: AUC, DeLong CI and paired test, ROC, thresholds, Wilson, flips.

References are independent of the code under test: scikit-learn for AUC/ROC, the O(m·n) pairwise
definition of DeLong's structural components for the fast midrank algorithm, a stratified
bootstrap for the DeLong variances, hand-worked small cases, and scipy for McNemar's tails.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from statistics import NormalDist

import numpy as np
import pytest

from edgevcf.errors import ConfigError, DataError
from edgevcf.metrics import (
    AUCResult,
    BinaryMetrics,
    FlipResult,
    PairedAUCResult,
    Proportion,
    auc,
    auc_ci,
    binary_metrics,
    decision_flips,
    mcnemar,
    non_inferior,
    paired_auc_test,
    roc_curve,
    threshold_for_sensitivity,
    wilson,
    youden_threshold,
)

PHI = NormalDist().cdf


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _binormal(
    rng: np.random.Generator, n_pos: int, n_neg: int, d: float
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (positives first) and scores N(d, 1) vs N(0, 1): true AUC = Phi(d / sqrt 2)."""
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    s = np.r_[rng.normal(d, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)]
    return y, s


def _pairwise_components(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components from the O(m n) definition (psi = 1, 1/2 on ties, 0)."""
    pos = s[y == 1][:, None]
    neg = s[y == 0][None, :]
    psi = (pos > neg) + 0.5 * (pos == neg)
    return psi.mean(axis=1), psi.mean(axis=0)  # V10 per positive, V01 per negative


def _rank_auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row of (pos, neg) resamples, for continuous scores (no pos/neg ties).

    Ties *within* a class (bootstrap duplicates) do not change the positives' rank sum, so plain
    argsort ranks are enough here.
    """
    m, n = pos.shape[1], neg.shape[1]
    both = np.concatenate((pos, neg), axis=1)
    ranks = np.argsort(np.argsort(both, axis=1), axis=1) + 1
    return (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)


# ----------------------------------------------------------------------------- AUC vs sklearn


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [True, False])
def test_auc_matches_sklearn(seed: int, ties: bool) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = _rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]  # both classes present
    s = rng.integers(0, 6, n).astype(float) if ties else rng.normal(size=n) + 0.7 * y
    assert auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert auc_ci(y, s).auc == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [True, False])
def test_roc_curve_matches_sklearn(seed: int, ties: bool) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = _rng(100 + seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n).astype(bool)
    y[:2] = [False, True]
    s = rng.integers(-3, 4, n) if ties else rng.normal(size=n)
    fpr, tpr, thr = roc_curve(y, s)
    fpr_r, tpr_r, thr_r = sk.roc_curve(y, s, drop_intermediate=False)
    assert thr[0] == np.inf
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(thr) < 0)
    assert fpr.shape == fpr_r.shape
    np.testing.assert_allclose(fpr, fpr_r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, tpr_r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(thr, thr_r, rtol=0, atol=1e-12)  # inf == inf passes
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(y, s), abs=1e-12)


def test_auc_edge_values_and_ties() -> None:
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc([0, 1], [1.0, 2.0]) == 1.0
    assert auc([0, 1], [2.0, 1.0]) == 0.0
    assert auc([0, 1, 0, 1], [3, 3, 3, 3]) == 0.5  # all tied: every pair counts 1/2
    assert auc([True, False, True], [1, 0, 0]) == 0.75  # bool labels; one pos-neg tie
    assert auc(np.array([0.0, 1.0, 1.0]), [0.2, 0.1, 0.9]) == 0.5  # float 0/1 labels accepted


# ------------------------------------------------------------------------------ DeLong variance


def test_delong_hand_worked_example() -> None:
    # y = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8]
    # positives X = (0.35, 0.8), negatives Y = (0.1, 0.4); psi(x, y) = 1 if x > y, 1/2 if equal.
    # V10 (per positive: fraction of negatives below it):
    #   0.35 > 0.1 yes, > 0.4 no    -> V10 = 1/2
    #   0.8  > 0.1 yes, > 0.4 yes   -> V10 = 1
    # V01 (per negative: fraction of positives above it):
    #   0.1 < 0.35 yes, < 0.8 yes   -> V01 = 1
    #   0.4 < 0.35 no,  < 0.8 yes   -> V01 = 1/2
    # AUC = mean(V10) = mean(V01) = 3/4
    # S10 = var(V10, ddof=1) = ((1/2 - 3/4)^2 + (1 - 3/4)^2) / (2 - 1) = 1/16 + 1/16 = 1/8
    # S01 = var(V01, ddof=1) = ((1 - 3/4)^2 + (1/2 - 3/4)^2) / 1 = 1/8
    # Var(AUC) = S10 / m + S01 / n = (1/8) / 2 + (1/8) / 2 = 1/8;  SE = sqrt(1/8) = 0.353553...
    # 95 % normal CI: 0.75 -+ 1.959964 * 0.353553 = (0.057048, 1.442952) -> clipped to (0.057048, 1)
    res = auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert res.auc == 0.75
    assert res.variance == pytest.approx(1 / 8, abs=1e-15)
    assert res.se == pytest.approx(math.sqrt(1 / 8), abs=1e-15)
    assert res.ci_low == pytest.approx(0.75 - 1.959963984540054 * math.sqrt(1 / 8), abs=1e-12)
    assert res.ci_low == pytest.approx(0.057048, abs=1e-6)
    assert res.ci_high == 1.0
    assert (res.n_pos, res.n_neg, res.level, res.method) == (2, 2, 0.95, "normal")


@pytest.mark.parametrize("seed", range(5))
def test_fast_delong_equals_pairwise_definition(seed: int) -> None:
    """Sun & Xu's midrank algorithm reproduces the O(m n) definition, ties included."""
    rng = _rng(200 + seed)
    n = int(rng.integers(10, 150))
    y = rng.integers(0, 2, n)
    y[:4] = [0, 0, 1, 1]
    a = rng.integers(0, 5, n).astype(float) + y  # heavy ties
    b = np.where(rng.random(n) < 0.7, a, rng.integers(0, 7, n))  # correlated with a
    m, k = int(y.sum()), int(n - y.sum())
    va10, va01 = _pairwise_components(y, a)
    vb10, vb01 = _pairwise_components(y, b)
    var_a = va10.var(ddof=1) / m + va01.var(ddof=1) / k
    var_b = vb10.var(ddof=1) / m + vb01.var(ddof=1) / k
    cov_ab = np.cov(va10, vb10)[0, 1] / m + np.cov(va01, vb01)[0, 1] / k
    res = auc_ci(y, a)
    assert res.auc == pytest.approx(va10.mean(), abs=1e-12)
    assert res.variance == pytest.approx(var_a, rel=1e-10, abs=1e-15)
    p = paired_auc_test(y, a, b)
    assert p.auc_a == pytest.approx(va10.mean(), abs=1e-12)
    assert p.auc_b == pytest.approx(vb10.mean(), abs=1e-12)
    assert p.se_diff**2 == pytest.approx(var_a + var_b - 2 * cov_ab, rel=1e-9, abs=1e-15)
    assert p.correlation == pytest.approx(cov_ab / math.sqrt(var_a * var_b), rel=1e-9)


def test_delong_variance_agrees_with_bootstrap() -> None:
    rng = _rng(1)
    n_pos = n_neg = 400
    y, s = _binormal(rng, n_pos, n_neg, d=1.2)
    res = auc_ci(y, s)
    pos, neg = s[:n_pos], s[n_pos:]
    n_boot = 2000
    ip = rng.integers(0, n_pos, (n_boot, n_pos))  # stratified: resample within each class
    ineg = rng.integers(0, n_neg, (n_boot, n_neg))
    boot = _rank_auc_rows(pos[ip], neg[ineg])
    assert res.variance == pytest.approx(boot.var(ddof=1), rel=0.15)


def test_paired_delong_variance_agrees_with_bootstrap() -> None:
    rng = _rng(2)
    n_pos = n_neg = 400
    y, latent = _binormal(rng, n_pos, n_neg, d=1.2)
    a = latent + 0.6 * rng.normal(size=latent.size)  # two noisy views of one latent score:
    b = latent + 0.4 * rng.normal(size=latent.size)  # correlated, b somewhat better
    res = paired_auc_test(y, a, b)
    n_boot = 2000
    ip = rng.integers(0, n_pos, (n_boot, n_pos))
    ineg = n_pos + rng.integers(0, n_neg, (n_boot, n_neg))  # same resample for both models
    diff = _rank_auc_rows(b[ip], b[ineg]) - _rank_auc_rows(a[ip], a[ineg])
    assert res.se_diff**2 == pytest.approx(diff.var(ddof=1), rel=0.15)
    assert 0.3 < res.correlation < 1.0
    # the paired variance is much smaller than treating the models as independent
    va, vb = auc_ci(y, a).variance, auc_ci(y, b).variance
    assert res.se_diff**2 < 0.8 * (va + vb)


@pytest.mark.parametrize("method", ["normal", "logit"])
def test_ci_coverage_binormal(method: str) -> None:
    rng = _rng(3)
    d = 1.2
    true_auc = PHI(d / math.sqrt(2))
    hits = 0
    n_sim = 300
    for _ in range(n_sim):
        y, s = _binormal(rng, 60, 80, d)
        res = auc_ci(y, s, method=method)  # type: ignore[arg-type]
        hits += res.ci_low <= true_auc <= res.ci_high
    assert 0.90 <= hits / n_sim <= 0.99


def test_logit_ci_formula_and_range() -> None:
    rng = _rng(4)
    y, s = _binormal(rng, 15, 20, d=2.5)  # high AUC, small sample: where the two differ
    normal = auc_ci(y, s, level=0.9)
    logit = auc_ci(y, s, level=0.9, method="logit")
    a, se = normal.auc, normal.se
    assert (logit.auc, logit.se, logit.method, logit.level) == (a, se, "logit", 0.9)
    z = NormalDist().inv_cdf(0.95)
    lo = 1 / (1 + math.exp(-(math.log(a / (1 - a)) - z * se / (a * (1 - a)))))
    hi = 1 / (1 + math.exp(-(math.log(a / (1 - a)) + z * se / (a * (1 - a)))))
    assert (logit.ci_low, logit.ci_high) == pytest.approx((lo, hi), abs=1e-12)
    assert 0 < logit.ci_low < a < logit.ci_high < 1
    assert logit.ci_high - a < a - logit.ci_low  # asymmetric: shorter towards 1
    assert normal.ci_low == pytest.approx(a - z * se, abs=1e-12)
    assert normal.ci_high == min(1.0, a + z * se)
    wider = auc_ci(y, s, level=0.99)
    assert wider.ci_low < normal.ci_low


@pytest.mark.parametrize("method", ["normal", "logit"])
def test_perfect_separation_collapses_ci(method: str) -> None:
    res = auc_ci([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9], method=method)  # type: ignore[arg-type]
    assert (res.auc, res.variance, res.ci_low, res.ci_high) == (1.0, 0.0, 1.0, 1.0)
    res0 = auc_ci([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], method=method)  # type: ignore[arg-type]
    assert (res0.auc, res0.ci_low, res0.ci_high) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------- paired test


def test_paired_identical_scores() -> None:
    rng = _rng(5)
    y, s = _binormal(rng, 50, 70, d=1.0)
    for b in (s, np.exp(s), 3 * s - 1):  # same ranks -> identical structural components
        res = paired_auc_test(y, s, b)
        assert res.diff == 0.0
        assert (res.se_diff, res.ci_low, res.ci_high, res.z, res.p_value) == (0, 0, 0, 0, 1.0)
        assert res.auc_a == res.auc_b == auc(y, s)
        assert res.correlation == pytest.approx(1.0)


def test_paired_zero_variance_with_nonzero_difference() -> None:
    y = [0, 0, 0, 1, 1, 1]
    constant = [0.5] * 6  # AUC 1/2, every component 1/2
    perfect = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]  # AUC 1, every component 1
    res = paired_auc_test(y, constant, perfect)
    assert (res.diff, res.se_diff, res.ci_low, res.ci_high) == (0.5, 0.0, 0.5, 0.5)
    assert res.z == math.inf
    assert res.p_value == 0.0
    assert math.isnan(res.correlation)


def test_paired_small_noise_is_highly_correlated() -> None:
    rng = _rng(6)
    y, a = _binormal(rng, 100, 100, d=1.0)
    b = a + 0.01 * rng.normal(size=a.size)  # e.g. a faithful INT8 model
    res = paired_auc_test(y, a, b)
    assert res.correlation > 0.99
    assert abs(res.diff) < 0.01
    assert res.p_value > 0.05
    assert res.ci_low < res.diff < res.ci_high
    assert non_inferior(res, tolerance=0.02)


def test_paired_clearly_better_model() -> None:
    rng = _rng(7)
    y, latent = _binormal(rng, 150, 150, d=1.5)
    a = latent + 2.0 * rng.normal(size=latent.size)  # a poor copy
    b = latent + 0.2 * rng.normal(size=latent.size)
    res = paired_auc_test(y, a, b)
    assert res.diff > 0.1
    assert res.p_value < 0.01
    assert res.z == pytest.approx(res.diff / res.se_diff)
    assert res.p_value == pytest.approx(math.erfc(abs(res.z) / math.sqrt(2)))
    assert res.ci_low > 0
    # swapping the models flips the sign, keeps the p-value
    rev = paired_auc_test(y, b, a)
    assert rev.diff == pytest.approx(-res.diff)
    assert rev.p_value == pytest.approx(res.p_value)
    assert not non_inferior(rev, tolerance=0.05)  # the worse model is not non-inferior


def _paired(ci_low: float) -> PairedAUCResult:
    return PairedAUCResult(
        auc_a=0.9,
        auc_b=0.9,
        diff=0.0,
        se_diff=0.01,
        ci_low=ci_low,
        ci_high=0.02,
        z=0.0,
        p_value=1.0,
        correlation=0.95,
        n_pos=100,
        n_neg=100,
    )


def test_non_inferior_logic() -> None:
    assert non_inferior(_paired(-0.005), 0.01)
    assert not non_inferior(_paired(-0.005), 0.005)  # strictly above -tolerance
    assert not non_inferior(_paired(-0.02), 0.01)
    assert non_inferior(_paired(0.001), 0.0)
    for bad in (-0.01, math.nan, math.inf):
        with pytest.raises(ConfigError):
            non_inferior(_paired(0.0), bad)


# ------------------------------------------------------------------------------- thresholds

# Worked example: m = 4 positives, n = 4 negatives, one case per score.
#   score : 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8
#   label :  0   0   1   0   1   0   1   1
# threshold t (score >= t positive): tp, fp -> J = tp/4 - fp/4
#   0.8: 1,0 -> .25   0.7: 2,0 -> .50   0.6: 2,1 -> .25   0.5: 3,1 -> .50
#   0.4: 3,2 -> .25   0.3: 4,2 -> .50   0.2: 4,3 -> .25   0.1: 4,4 -> 0
THR_Y = [0, 0, 1, 0, 1, 0, 1, 1]
THR_S = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_youden_threshold_ties_take_highest() -> None:
    # J = .5 at 0.7, 0.5 and 0.3: the highest wins, and the threshold sits between 0.7 and 0.6
    assert youden_threshold(THR_Y, THR_S) == pytest.approx(0.65)
    assert youden_threshold(THR_Y[::-1], THR_S[::-1]) == pytest.approx(0.65)  # order irrelevant
    assert youden_threshold([0, 0, 1, 1], [1, 2, 3, 4]) == 2.5  # perfect split: between classes


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.25, 0.75), (0.5, 0.65), (0.75, 0.45), (0.76, 0.25), (1.0, 0.25), (1 - 0.25, 0.45)],
)
def test_threshold_for_sensitivity(target: float, expected: float) -> None:
    t = threshold_for_sensitivity(THR_Y, THR_S, target)
    assert t == pytest.approx(expected)
    assert binary_metrics(THR_Y, THR_S, t).sensitivity.value >= target - 1e-12


def test_threshold_for_sensitivity_float_noise_and_ties() -> None:
    y = [1] * 10 + [0] * 5
    s = list(range(10)) + [0] * 5
    # 1 - 0.3 = 0.7000000000000001: 7 of 10 positives (scores 3..9) must count as reaching it
    assert threshold_for_sensitivity(y, s, 1 - 0.3) == 2.5
    # tied scores: with t in (0, 1] positives 1..9 are flagged (0.9); 1.0 needs all, t below 0
    assert threshold_for_sensitivity(y, s, 0.9) == 0.5
    assert threshold_for_sensitivity(y, s, 1.0) == -0.5  # half the gap to 1 below the lowest
    assert threshold_for_sensitivity([1, 1], [0.2, 0.6], 0.5) == pytest.approx(0.4)
    assert threshold_for_sensitivity([1, 1], [0.3, 0.3], 1.0) == pytest.approx(-0.2)


def test_operating_thresholds_lie_on_no_tuning_score() -> None:
    """The calls at the threshold are those of the ROC point it was chosen at, and no case is on it.

    A threshold equal to a tuning score flips that case under any rounding difference (an FP32
    export flipped one decision on an Intel CPU, 6.4e-7 between PyTorch and ONNX Runtime).
    """
    rng = _rng(21)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        # float32 probabilities as a model gives them, with ties (rounded to a coarse grid)
        s = rng.random(n).astype(np.float32)
        if trial % 3 == 0:
            s = np.round(s * 8) / 8
        s64 = s.astype(np.float64)
        target = rng.uniform(0.05, 1)
        for t in (youden_threshold(y, s64), threshold_for_sensitivity(y, s64, target)):
            assert not np.any(s64 == t)
            called = s64 >= t
            picked = s64[called].min()  # the lowest score called positive
            assert np.array_equal(called, s64 >= picked)
            below = s64[~called]
            if below.size:
                assert t == pytest.approx((picked + below.max()) / 2, rel=1e-12)
            assert np.array_equal(s >= np.float32(t), called)  # in float32 arithmetic too


# ----------------------------------------------------------------------------------- Wilson


def _wilson_reference(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson bounds as the roots of (p - p_hat)^2 = z^2 p (1 - p) / n (a quadratic in p)."""
    p_hat = k / n
    qa = 1 + z * z / n
    qb = -(2 * p_hat + z * z / n)
    qc = p_hat * p_hat
    disc = math.sqrt(qb * qb - 4 * qa * qc)
    return (-qb - disc) / (2 * qa), (-qb + disc) / (2 * qa)


def test_wilson_known_values() -> None:
    p = wilson(8, 10)
    assert (p.value, p.k, p.n) == (0.8, 8, 10)
    assert p.ci_low == pytest.approx(0.4902, abs=1e-4)
    assert p.ci_high == pytest.approx(0.9433, abs=1e-4)
    for k, n, level in [(8, 10, 0.95), (3, 17, 0.9), (45, 50, 0.99), (1, 2, 0.95)]:
        q = wilson(k, n, level)
        z = NormalDist().inv_cdf(0.5 + level / 2)
        assert (q.ci_low, q.ci_high) == pytest.approx(_wilson_reference(k, n, z), abs=1e-12)


def test_wilson_edges() -> None:
    zero = wilson(0, 10)
    assert (zero.value, zero.ci_low) == (0.0, 0.0)
    assert zero.ci_high == pytest.approx(_wilson_reference(0, 10, 1.959963984540054)[1])
    full = wilson(10, 10)
    assert (full.value, full.ci_high) == (1.0, 1.0)
    assert full.ci_low == pytest.approx(1 - zero.ci_high)  # symmetry k <-> n - k
    empty = wilson(0, 0)
    assert math.isnan(empty.value) and math.isnan(empty.ci_low) and math.isnan(empty.ci_high)
    assert (empty.k, empty.n) == (0, 0)
    assert wilson(np.int64(3), np.int64(4)).value == 0.75
    for k, n in [(5, 4), (-1, 4), (1, -1), (1.5, 4)]:
        with pytest.raises(DataError):
            wilson(k, n)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        wilson(1, 2, level=1.0)


# -------------------------------------------------------------------------- binary metrics


def test_binary_metrics_counts() -> None:
    # at t = 0.5: flagged scores 0.5..0.8 have labels 1,0,1,1 -> tp 3, fp 1;
    # the rest 0.1..0.4 have labels 0,0,1,0 -> fn 1, tn 3.
    m = binary_metrics(THR_Y, THR_S, 0.5)
    assert (m.threshold, m.tp, m.fp, m.tn, m.fn) == (0.5, 3, 1, 3, 1)
    assert (m.sensitivity.k, m.sensitivity.n) == (3, 4)
    assert (m.specificity.k, m.specificity.n) == (3, 4)
    assert (m.accuracy.k, m.accuracy.n) == (6, 8)
    assert (m.precision.k, m.precision.n) == (3, 4)
    assert (m.npv.k, m.npv.n) == (3, 4)
    assert m.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m.sensitivity == wilson(3, 4)


def test_binary_metrics_threshold_rule_is_ge() -> None:
    at = binary_metrics(THR_Y, THR_S, 0.5)  # the case scored exactly 0.5 (a positive) is flagged
    above = binary_metrics(THR_Y, THR_S, np.nextafter(0.5, 1.0))
    assert (at.tp, at.fn) == (3, 1)
    assert (above.tp, above.fn) == (2, 2)
    # consistent with the ROC curve: the point at threshold t is (fp/n, tp/m)
    fpr, tpr, thr = roc_curve(THR_Y, THR_S)
    i = int(np.flatnonzero(thr == 0.5)[0])
    assert (fpr[i], tpr[i]) == (at.fp / 4, at.tp / 4)


def test_binary_metrics_undefined_parts_are_nan() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3], threshold=0.9)  # no positives, no calls
    assert (m.tp, m.fp, m.tn, m.fn) == (0, 0, 3, 0)
    assert math.isnan(m.sensitivity.value) and math.isnan(m.precision.value)
    assert math.isnan(m.f1)
    assert m.specificity.value == 1.0
    everything = binary_metrics([0, 1], [0.1, 0.2], threshold=-math.inf)
    assert (everything.tp, everything.fp) == (1, 1)
    with pytest.raises(ConfigError):
        binary_metrics([0, 1], [0.1, 0.2], threshold=math.nan)


# ---------------------------------------------------------------------- flips and McNemar


def test_decision_flips_small_example() -> None:
    a = [0.1, 0.6, 0.7, 0.4, 0.9, 0.55]
    b = [0.2, 0.4, 0.8, 0.6, 0.9, 0.45]
    # at 0.5: A = - + + - + +, B = - - + + + -  -> A+B- at cases 1 and 5, A-B+ at case 3
    res = decision_flips(a, b, 0.5)
    assert (res.n, res.flips, res.a_pos_b_neg, res.a_neg_b_pos) == (6, 3, 2, 1)
    assert res.flip_rate == wilson(3, 6)
    assert res.mcnemar_p == mcnemar(2, 1) == 1.0
    # each model at its own threshold: B at 0.4 = - + + + + +  -> only case 3 flips (A- B+)
    own = decision_flips(a, b, 0.5, threshold_b=0.4)
    assert (own.flips, own.a_pos_b_neg, own.a_neg_b_pos) == (1, 0, 1)
    none = decision_flips(a, a, 0.5)
    assert (none.flips, none.flip_rate.value, none.mcnemar_p) == (0, 0.0, 1.0)


def test_mcnemar_exact_small_case() -> None:
    # b = 1, c = 6: 2 * P(X <= 1 | Bin(7, 1/2)) = 2 * (1 + 7) / 128 = 0.125
    assert mcnemar(1, 6) == 0.125
    assert mcnemar(6, 1) == 0.125
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(3, 3) == 1.0
    assert mcnemar(0, 5) == 2 / 32


def test_mcnemar_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b in range(0, 25):
        for c in range(0, 25 - b):
            if b + c:
                assert mcnemar(b, c) == pytest.approx(stats.binomtest(b, b + c).pvalue, rel=1e-9)
    for b, c in [(30, 12), (12, 30), (20, 5), (100, 80), (13, 13), (40, 0)]:
        stat = max(0, abs(b - c) - 1) ** 2 / (b + c)
        assert mcnemar(b, c) == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-9, abs=1e-300)
    for bad in [(-1, 2), (1.0, 2), (True, 2)]:
        with pytest.raises(DataError):
            mcnemar(*bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- result dicts


def test_results_serialise_to_plain_dicts() -> None:
    rng = _rng(8)
    y, s = _binormal(rng, 30, 30, d=1.0)
    t = youden_threshold(y, s)
    ci = auc_ci(y, s)
    results: list[AUCResult | PairedAUCResult | BinaryMetrics | FlipResult | Proportion] = [
        ci,
        paired_auc_test(y, s, s + 0.1 * rng.normal(size=s.size)),
        binary_metrics(y, s, t),
        decision_flips(s, s + 0.1, t),
        wilson(3, 9),
    ]
    for r in results:
        assert isinstance(r, AUCResult | PairedAUCResult | BinaryMetrics | FlipResult | Proportion)
        d = r.to_dict()
        assert json.loads(json.dumps(d)) == d
    bm = binary_metrics(y, s, t).to_dict()
    assert set(bm["sensitivity"]) == {"value", "ci_low", "ci_high", "k", "n"}
    assert isinstance(bm["tp"], int) and isinstance(bm["threshold"], float)
    with pytest.raises(AttributeError):
        ci.auc = 0.5  # type: ignore[misc]  # frozen


# -------------------------------------------------------------------------------- bad input


def test_single_class_names_counts() -> None:
    for fn in (auc, auc_ci, roc_curve, youden_threshold):
        with pytest.raises(DataError, match=r"5 positives and 0 negatives"):
            fn([1] * 5, np.arange(5.0))
    with pytest.raises(DataError, match=r"0 positives and 3 negatives"):
        paired_auc_test([0, 0, 0], [1, 2, 3], [1, 2, 3])
    with pytest.raises(DataError, match=r"at least 2 positives.*1 positive and 3 negatives"):
        auc_ci([1, 0, 0, 0], [0.4, 0.1, 0.2, 0.3])  # DeLong variance needs 2 per class
    assert auc([1, 0, 0, 0], [0.4, 0.1, 0.2, 0.3]) == 1.0  # the AUC itself needs only 1
    with pytest.raises(DataError, match="0 positives"):
        threshold_for_sensitivity([0, 0], [0.1, 0.2], 0.9)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores(bad: float) -> None:
    s = [0.1, bad, 0.3, 0.4]
    y = [0, 1, 0, 1]
    for call in (
        lambda: auc(y, s),
        lambda: auc_ci(y, s),
        lambda: roc_curve(y, s),
        lambda: paired_auc_test(y, [0.1, 0.2, 0.3, 0.4], s),
        lambda: binary_metrics(y, s, 0.5),
        lambda: decision_flips(s, [0.1, 0.2, 0.3, 0.4], 0.5),
    ):
        with pytest.raises(DataError, match="non-finite"):
            call()


def test_length_mismatch() -> None:
    with pytest.raises(DataError, match="4 labels but 3 scores"):
        auc([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="scores_b"):
        paired_auc_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="length mismatch"):
        decision_flips([0.1, 0.2], [0.1], 0.5)
    with pytest.raises(DataError, match="length mismatch"):
        binary_metrics([0, 1], [0.1], 0.5)


def test_bad_labels_and_shapes() -> None:
    with pytest.raises(DataError, match="0/1"):
        auc([1, 2, 1, 2], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(DataError, match="0/1"):
        auc([-1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="0/1"):
        auc([0.0, math.nan, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="0/1"):
        auc(["a", "b"], [0.1, 0.2])
    with pytest.raises(DataError, match="1-D"):
        auc([0, 1], [[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(DataError, match="real numbers"):
        auc([0, 1], ["x", "y"])


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1, math.nan, 95])
def test_bad_level(level: float) -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    with pytest.raises(ConfigError, match="confidence level"):
        auc_ci(y, s, level=level)
    with pytest.raises(ConfigError):
        paired_auc_test(y, s, s, level=level)
    with pytest.raises(ConfigError):
        wilson(1, 2, level=level)
    with pytest.raises(ConfigError):
        binary_metrics(y, s, 0.5, level=level)


def test_bad_parameters() -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    with pytest.raises(ConfigError, match="method"):
        auc_ci(y, s, method="wald")  # type: ignore[arg-type]
    for target in (0.0, 1.01, -0.5, math.nan):
        with pytest.raises(ConfigError, match="target sensitivity"):
            threshold_for_sensitivity(y, s, target)
    with pytest.raises(ConfigError):
        decision_flips(s, s, 0.5, threshold_b=math.nan)


def test_import_needs_numpy_only() -> None:
    code = (
        "import sys, edgevcf.metrics; "
        "bad = [m for m in ('scipy', 'sklearn', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_accuracy_gate_is_non_inferiority_and_flips() -> None:
    from edgevcf import metrics

    """The one gate export, bench and the reference benchmarks share."""
    rng = np.random.default_rng(7)
    y = rng.random(400) < 0.4
    ref = np.clip(0.5 + 0.3 * (y - 0.5) + 0.15 * rng.standard_normal(400), 0, 1)
    same = metrics.accuracy_gate(y, ref, ref, 0.5, 0.01, 0.02)
    assert same.passed and same.auc_ok and same.flip_ok and same.flips.flips == 0
    noisy = np.clip(ref + 0.3 * rng.standard_normal(400), 0, 1)
    worse = metrics.accuracy_gate(y, ref, noisy, 0.5, 0.01, 0.02)
    assert worse.passed is False and not worse.flip_ok and worse.auc_ok is False
    one_class = metrics.accuracy_gate(np.zeros(10, bool), ref[:10], ref[:10], 0.5, 0.01, 0.02)
    assert one_class.passed is None and one_class.paired is None and one_class.flip_ok


def _raters(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * a_only + [0] * b_only + [0] * neither, bool)
    b = np.array([1] * both + [0] * a_only + [1] * b_only + [0] * neither, bool)
    return a, b


def test_paired_proportion_diff_reads_the_discordant_cells() -> None:
    """B - A from McNemar's cells; identical raters give a CI around 0 that narrows with n."""
    from edgevcf import metrics

    r = metrics.paired_proportion_diff(*_raters(12, 9, 2, 21))
    assert r.diff == pytest.approx((2 - 9) / 44) and (r.a_only, r.b_only, r.n) == (9, 2, 44)
    assert r.ci_low < r.diff < r.ci_high < 0  # 9 losses vs 2 gains: B is worse
    assert r.p_a == pytest.approx(21 / 44) and r.p_b == pytest.approx(14 / 44)
    small = metrics.paired_proportion_diff(*_raters(18, 0, 0, 2))
    large = metrics.paired_proportion_diff(*_raters(180, 0, 0, 20))
    for x in (small, large):
        assert x.diff == 0 and x.ci_low < 0 < x.ci_high
    assert large.ci_high - large.ci_low < small.ci_high - small.ci_low
    # nothing discordant among 20 does not show agreement within 5 points
    assert small.ci_low < -0.05
    empty = metrics.paired_proportion_diff(np.zeros(0, bool), np.zeros(0, bool))
    assert np.isnan(empty.diff) and empty.n == 0


def test_paired_proportion_diff_covers_the_true_difference() -> None:
    """Coverage of the 95 % interval over simulated paired raters is near 95 % (Newcombe's
    method 10 is known to be close to nominal, a little conservative with few discordant pairs)."""
    from edgevcf import metrics

    rng = np.random.default_rng(2026)
    n, keep, pa, pb = 200, 0.6, 0.7, 0.5
    true = (keep * pa + (1 - keep) * pb) - pa
    hits = 0
    for _ in range(1000):
        a = rng.random(n) < pa
        b = np.where(rng.random(n) < keep, a, rng.random(n) < pb)
        r = metrics.paired_proportion_diff(a, b)
        hits += r.ci_low <= true <= r.ci_high
    assert 0.93 <= hits / 1000 <= 0.975


def test_the_gate_judges_the_operating_point_and_not_one_image() -> None:
    """Sensitivity lost at the threshold fails the gate even when the AUC holds; a flip rate a
    hair over its limit does not (its CI reaches below it); one far over it does."""
    from edgevcf import metrics

    rng = np.random.default_rng(11)
    n = 600
    y = rng.random(n) < 0.45
    ref = np.clip(0.5 + 0.25 * (y - 0.5) + 0.12 * rng.standard_normal(n), 0.001, 0.999)
    # a monotone shift of the scores: the same AUC, fewer positive calls at the threshold
    lower = ref * 0.8
    g = metrics.accuracy_gate(y, ref, lower, 0.5, 0.01, 0.5)
    assert g.auc_ok and g.paired.diff == pytest.approx(0.0, abs=1e-12)
    assert g.sensitivity.diff < -0.05 and g.point_ok is False and g.passed is False
    assert "sensitivity" in g.failed and "auc" not in g.failed
    assert g.to_dict()["failed"] == list(g.failed) and g.to_dict()["rule"] == metrics.GATE_RULE
    # 13 of 600 near-threshold decisions flipped (2.2 % > 2 %), balanced between the classes
    near = np.argsort(np.abs(ref - 0.5))
    pick = np.concatenate([near[y[near]][:7], near[~y[near]][:6]])
    flipped = ref.copy()
    flipped[pick] = np.where(ref[pick] >= 0.5, 0.4999, 0.5001)
    h = metrics.accuracy_gate(y, ref, flipped, 0.5, 0.01, 0.02)
    assert h.flips.flip_rate.value > 0.02 and h.flips.flip_rate.ci_low < 0.02
    assert h.flip_ok and h.passed, h.failed
    # a sixth of the decisions flipped: shown to exceed the limit
    many = ref.copy()
    many[near[:100]] = 1 - ref[near[:100]]
    k = metrics.accuracy_gate(y, ref, many, 0.5, 0.01, 0.02)
    assert not k.flip_ok and "flips" in k.failed and k.passed is False


def test_films_to_show_non_inferiority() -> None:
    from edgevcf import metrics

    # half-width 0.009, room to the margin 0.006: (0.009 / 0.006)^2 = 2.25 times the cases
    assert metrics.films_to_show_non_inferiority(300, -0.004, -0.013, 0.01) == 675
    assert metrics.films_to_show_non_inferiority(300, -0.004, -0.005, 0.01) is None  # shown
    assert metrics.films_to_show_non_inferiority(300, -0.012, -0.020, 0.01) is None  # beyond it


def _slightly_worse(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A candidate that is its reference plus a little noise: a true ΔAUC of about -0.005."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.45
    ref = np.clip(0.5 + 0.25 * (y - 0.5) + 0.12 * rng.standard_normal(n), 0.001, 0.999)
    return y, ref, np.clip(ref + 0.03 * rng.standard_normal(n), 0.001, 0.999)


def test_a_gate_failed_inside_its_margin_is_inconclusive_and_more_films_decide_it() -> None:
    """A small split fails a slightly worse candidate with its point estimate inside the margin:
    inconclusive, with the films that would decide it; a split of that size passes it. A
    candidate shown worse (the whole CI beyond the margin) is not inconclusive."""
    from edgevcf import metrics
    from edgevcf.report import gate_cell

    y, ref, cand = _slightly_worse(300, 5)
    g = metrics.accuracy_gate(y, ref, cand, 0.5, 0.01, 0.5)
    assert g.passed is False and "auc" in g.failed and g.paired.diff > -0.01
    assert g.inconclusive == g.failed and g.films_needed["auc"] > 300
    assert g.to_dict()["inconclusive"] == list(g.failed)
    assert gate_cell(g.passed, g.to_dict()).startswith("FAIL (auc: inconclusive")
    y, ref, cand = _slightly_worse(2 * g.films_needed["auc"], 4)
    big = metrics.accuracy_gate(y, ref, cand, 0.5, 0.01, 0.5)
    assert big.passed and big.paired.diff < -0.002 and not big.inconclusive  # still worse, shown
    rng = np.random.default_rng(6)
    worse = np.clip(ref + 0.25 * rng.standard_normal(ref.size), 0.001, 0.999)
    w = metrics.accuracy_gate(y, ref, worse, 0.5, 0.01, 0.5)
    assert "auc" in w.failed and w.paired.ci_high < -0.01 and "auc" not in w.films_needed
    assert gate_cell(w.passed, w.to_dict()).startswith("FAIL (auc")
    assert "auc: inconclusive" not in gate_cell(w.passed, w.to_dict())


def test_gate_for_reads_a_profile_or_a_manifest_tolerance() -> None:
    from edgevcf import metrics
    from edgevcf.profiles import Tolerance

    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.4
    ref = np.clip(0.5 + 0.3 * (y - 0.5) + 0.1 * rng.standard_normal(300), 0, 1)
    a = metrics.gate_for(Tolerance(), y, ref, ref * 0.9, 0.5)
    b = metrics.gate_for({"max_auc_drop": 0.01, "max_flip_rate": 0.02}, y, ref, ref * 0.9, 0.5)
    assert a.to_dict() == b.to_dict()  # an old manifest's tolerance: today's margins
    c = metrics.gate_for(Tolerance(max_sensitivity_drop=0.5), y, ref, ref * 0.9, 0.5)
    assert c.max_sensitivity_drop == 0.5
