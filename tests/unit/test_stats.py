"""edgevcf.stats against reference implementations (scipy, statsmodels, dcurves) and published
worked examples — never only against itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevcf import stats
from edgevcf.errors import ConfigError, DataError


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 40])
@pytest.mark.parametrize("x", [0.0, 0.01, 0.5, 1.0, 3.84, 7.2, 20.0, 80.0, 300.0])
def test_chi2_sf_matches_scipy(x: float, df: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    want = float(scipy_stats.chi2.sf(x, df))
    assert stats.chi2_sf(x, df) == pytest.approx(want, rel=1e-10, abs=1e-300)


def test_homogeneity_matches_scipy_contingency() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    counts = {"GE": (40, 50), "Philips": (25, 45), "Agfa": (30, 34)}
    got = stats.homogeneity_test(counts)
    table = np.array([[k, n - k] for k, n in counts.values()])
    chi2, p, dof, _ = scipy_stats.chi2_contingency(table, correction=False)
    assert got.statistic == pytest.approx(chi2, rel=1e-12)
    assert got.p_value == pytest.approx(p, rel=1e-9)
    assert got.df == dof == 2
    assert got.note == ""
    small = stats.homogeneity_test({"a": (3, 4), "b": (1, 5), "empty": (0, 0)})
    assert small.levels == ("a", "b") and "approximate" in small.note
    assert math.isnan(stats.homogeneity_test({"a": (3, 4)}).p_value)


def test_cochran_q_matches_statsmodels() -> None:
    meta = pytest.importorskip("statsmodels.stats.meta_analysis")
    est = {
        "<50": (0.91, 0.0004),
        "50-64": (0.86, 0.0009),
        "65-79": (0.80, 0.0016),
        ">=80": (0.88, 0.0025),
    }
    got = stats.cochran_q(est)
    res = meta.combine_effects(
        np.array([e for e, _ in est.values()]), np.array([v for _, v in est.values()])
    )
    assert got.statistic == pytest.approx(res.q, rel=1e-10)
    assert got.df == 3
    assert got.i_squared == pytest.approx(res.i2, rel=1e-9)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert got.p_value == pytest.approx(scipy_stats.chi2.sf(res.q, 3), rel=1e-9)
    dropped = stats.cochran_q({**est, "tiny": (1.0, 0.0)})
    assert "tiny" in dropped.note and dropped.statistic == pytest.approx(got.statistic)


def test_buderer_published_example() -> None:
    # Sensitivity 0.90 +- 0.05 at 95 %: 1.96^2 x 0.9 x 0.1 / 0.05^2 = 138.3 -> 139 positives
    # (Buderer 1996, the example the issue quotes); 139 / 0.30 -> 461 films.
    plan = stats.films_for_proportion("sensitivity", 0.90, 0.05, 0.30)
    assert plan.cases == 139
    assert plan.films == math.ceil(1.959963984540054**2 * 0.09 / 0.0025 / 0.30)
    assert plan.positives >= 139 and plan.positives + plan.negatives == plan.films
    spec = stats.films_for_proportion("specificity", 0.80, 0.10, 0.20)
    assert spec.cases == 62  # 3.8415 x 0.16 / 0.01 = 61.5
    assert spec.negatives == 62 and spec.films == math.ceil(61.46 / 0.8) == 77
    with pytest.raises(ConfigError):
        stats.films_for_proportion("sensitivity", 1.2, 0.05, 0.3)


def test_hanley_mcneil_is_the_mann_whitney_variance_under_exponential_scores() -> None:
    # Hanley & McNeil's Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A) are exact when scores are
    # exponential; their SE is then the Mann-Whitney AUC's true spread: check by simulation.
    rng = np.random.default_rng(11)
    a, n_pos, n_neg, reps = 0.85, 24, 40, 20_000
    rate = (1 - a) / a  # P(pos > neg) = a for pos ~ Exp(rate), neg ~ Exp(1)
    pos = rng.exponential(1 / rate, (reps, n_pos))
    neg = rng.exponential(1.0, (reps, n_neg))
    aucs = (pos[:, :, None] > neg[:, None, :]).mean(axis=(1, 2))
    assert stats.hanley_mcneil_se(a, n_pos, n_neg) == pytest.approx(aucs.std(ddof=1), rel=0.03)
    plan = stats.films_for_auc(0.85, 0.05, 0.30)
    z = 1.959963984540054
    assert z * plan.se <= 0.05
    smaller = plan.films - 1
    pos_n = round(smaller * 0.30)
    assert z * stats.hanley_mcneil_se(0.85, pos_n, smaller - pos_n) > 0.05


def test_logistic_calibration_matches_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    lp = rng.normal(0.0, 1.6, 400)
    y = (rng.uniform(size=400) < 1 / (1 + np.exp(-(0.4 + 0.7 * lp)))).astype(int)
    p = 1 / (1 + np.exp(-lp))
    got = stats.logistic_calibration(y, p)
    fam = sm.families.Binomial()
    citl = sm.GLM(y, np.ones((400, 1)), family=fam, offset=lp).fit()
    slope = sm.GLM(y, sm.add_constant(lp), family=fam).fit()
    assert got.citl == pytest.approx(citl.params[0], abs=1e-8)
    assert got.citl_ci == pytest.approx(tuple(citl.conf_int()[0]), abs=1e-6)
    assert got.slope == pytest.approx(slope.params[1], abs=1e-8)
    assert got.slope_ci == pytest.approx(tuple(slope.conf_int()[1]), abs=1e-6)
    with pytest.raises(DataError, match="both classes"):
        stats.logistic_calibration([1, 1, 1], [0.2, 0.5, 0.9])


def test_net_benefit_matches_dcurves() -> None:
    dcurves = pytest.importorskip("dcurves", reason="pip install dcurves (the dev extras have it)")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(int)
    pts = [0.05, 0.1, 0.2, 0.35, 0.5, 0.7]
    got = stats.net_benefit(y, p, pts)
    ref = dcurves.dca(data=pd.DataFrame({"y": y, "m": p}), outcome="y", modelnames=["m"],
                      thresholds=pts)  # fmt: skip
    for name, key in (("m", "model"), ("all", "treat_all"), ("none", "treat_none")):
        want = ref[ref["model"] == name].sort_values("threshold")["net_benefit"].to_numpy()
        assert np.allclose(got[key], want, atol=1e-12), name


def test_reliability_curve_bins() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 1])
    p = np.linspace(0.05, 0.95, 10)
    rows = stats.reliability_curve(y, p, bins=5)
    assert [r["n"] for r in rows] == [2] * 5
    assert [r["observed"] for r in rows] == [0.0, 0.5, 1.0, 0.5, 1.0]
    assert all(r["ci_low"] <= r["observed"] <= r["ci_high"] for r in rows)


def test_benjamini_hochberg_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.01, 0.04, 0.03, 0.2, 0.005, 0.9, 0.04]
    want = multitest.multipletests(p, method="fdr_bh")[1]
    assert np.allclose(stats.benjamini_hochberg(p), want, rtol=1e-12)
    got = stats.benjamini_hochberg([0.02, float("nan"), 0.01])
    assert math.isnan(got[1]) and np.allclose([got[0], got[2]], [0.02, 0.02])


def test_threshold_for_specificity_is_the_lowest_meeting_the_target() -> None:
    from edgevcf import metrics

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    for target in (0.5, 0.8, 0.95, 1.0):
        t = metrics.threshold_for_specificity(y, s, target)
        spec = np.mean(s[y == 0] < t)
        assert spec >= target - 1e-12 and not np.any(s == t)
        lower = np.sort(np.unique(s))
        below = lower[lower < t]
        if below.size:  # one more score called positive would miss the target
            assert np.mean(s[y == 0] < below[-1]) < target
