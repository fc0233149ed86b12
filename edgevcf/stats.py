"""Statistics a site needs beyond the export gate: sample sizes, heterogeneity, calibration.

:mod:`edgevcf.metrics` judges a deployed model against its FP32 source on one split. A clinic asks
other questions, each answered here by one function with the textbook method named (numpy and
:mod:`math` only, like :mod:`edgevcf.metrics`, so ``validate`` runs where a cart's packages are):

* **How many films** before collecting them: Buderer (1996) for a sensitivity or specificity CI
  of a chosen half-width (:func:`films_for_proportion`), Hanley & McNeil (1982) for an AUC CI
  (:func:`films_for_auc`).
* **Do subgroups differ**: Pearson's chi-square test of homogeneity for a proportion across the
  levels of a subgroup (:func:`homogeneity_test`) and Cochran's Q for AUCs with DeLong variances
  (:func:`cochran_q`); their p-values from :func:`chi2_sf`.
* **Are the probabilities right**: calibration-in-the-large and the calibration slope by
  logistic recalibration with Wald CIs (:func:`logistic_calibration`), a reliability curve
  (:func:`reliability_curve`) and decision-curve net benefit (:func:`net_benefit`, Vickers &
  Elkin 2006).

Each is checked against a reference implementation (scipy, statsmodels, dcurves) or a published
worked example in ``tests/unit/test_stats.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgevcf.errors import ConfigError, DataError
from edgevcf.metrics import labels_of, scores_of, wilson, z_critical

__all__ = [
    "AUCPlan",
    "CalibrationResult",
    "HeterogeneityResult",
    "ProportionPlan",
    "benjamini_hochberg",
    "chi2_sf",
    "cochran_q",
    "films_for_auc",
    "films_for_proportion",
    "hanley_mcneil_se",
    "homogeneity_test",
    "logistic_calibration",
    "net_benefit",
    "reliability_curve",
]

FloatArray = npt.NDArray[np.float64]

# ----------------------------------------------------------------------------- chi-square


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x): series below a + 1, Lentz's continued
    fraction above (Numerical Recipes' ``gammq``), both to double precision."""
    if x <= 0.0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with ``df`` degrees of freedom (scipy's
    ``chi2.sf``), without scipy: a cart's validation has numpy only."""
    if df < 1:
        raise ConfigError(f"chi-square needs df >= 1, got {df}")
    if not math.isfinite(x):
        return 0.0 if x > 0 else 1.0
    return _gamma_q(df / 2.0, max(x, 0.0) / 2.0)


@dataclass(frozen=True)
class HeterogeneityResult:
    """A test that the levels of a subgroup share one value.

    Attributes:
        test: The test's name.
        statistic: Its statistic.
        df: Degrees of freedom.
        p_value: Chi-square tail probability (nan when fewer than two levels could be tested).
        levels: The levels tested.
        i_squared: Cochran's Q only: the share of variation beyond chance, max(0, (Q - df) / Q).
        note: What limits the test (small expected counts, levels left out).
    """

    test: str
    statistic: float
    df: int
    p_value: float
    levels: tuple[str, ...]
    i_squared: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for validation.json)."""
        return asdict(self)


def _untestable(test: str, levels: Sequence[str], why: str) -> HeterogeneityResult:
    return HeterogeneityResult(test, math.nan, 0, math.nan, tuple(levels), None, why)


def homogeneity_test(counts: dict[str, tuple[int, int]]) -> HeterogeneityResult:
    """Pearson's chi-square test that one proportion (e.g. sensitivity) is equal across levels.

    Why this test: the levels of a subgroup are disjoint groups of patients, so their counts form
    an independent k x 2 table (successes, failures per level) — the textbook test of homogeneity
    (scipy's ``chi2_contingency`` without continuity correction). The chi-square approximation
    wants expected counts of about 5 or more; where some are smaller the note says so, and a
    p-value then reads as approximate. Levels with no cases are left out.

    Args:
        counts: level -> (successes k, trials n).
    """
    test = "Pearson chi-square test of homogeneity"
    rows = {lvl: (int(k), int(n)) for lvl, (k, n) in counts.items() if int(n) > 0}
    for lvl, (k, n) in rows.items():
        if not 0 <= k <= n:
            raise DataError(f"level {lvl!r}: need 0 <= k <= n, got k={k}, n={n}")
    if len(rows) < 2:
        return _untestable(test, list(rows), "fewer than two levels with cases")
    succ = np.array([v[0] for v in rows.values()], dtype=np.float64)
    trials = np.array([v[1] for v in rows.values()], dtype=np.float64)
    obs = np.stack([succ, trials - succ], axis=1)
    col = obs.sum(axis=0)
    if (col == 0).any():
        return HeterogeneityResult(test, 0.0, len(rows) - 1, 1.0, tuple(rows), None,
                                   "every level has the same outcome")  # fmt: skip
    exp = trials[:, None] * col[None, :] / trials.sum()
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(rows) - 1
    small = int((exp < 5).sum())
    note = f"{small} of {exp.size} expected counts below 5: approximate" if small else ""
    return HeterogeneityResult(test, stat, df, chi2_sf(stat, df), tuple(rows), None, note)


def cochran_q(estimates: dict[str, tuple[float, float]]) -> HeterogeneityResult:
    """Cochran's Q test that independent estimates (e.g. per-subgroup AUCs) share one value.

    Why this test: subgroups are disjoint sets of patients, so their AUCs are independent, each
    with its DeLong variance; Q = sum w_i (est_i - pooled)^2 with inverse-variance weights is
    chi-square with k - 1 df under homogeneity (the fixed-effect test of meta-analysis, as
    statsmodels' ``combine_effects`` computes it), and I^2 says how much of the spread is beyond
    chance. Levels with zero variance (a perfectly separated small group) cannot be weighted and
    are left out, as the note says.

    Args:
        estimates: level -> (estimate, variance).
    """
    test = "Cochran's Q (inverse-variance weights)"
    kept = {lvl: (float(e), float(v)) for lvl, (e, v) in estimates.items()
            if math.isfinite(e) and math.isfinite(v) and v > 0}  # fmt: skip
    dropped = sorted(set(estimates) - set(kept))
    note = f"left out (no variance): {', '.join(dropped)}" if dropped else ""
    if len(kept) < 2:
        return _untestable(test, list(kept), note or "fewer than two levels with an AUC")
    e = np.array([v[0] for v in kept.values()])
    w = 1.0 / np.array([v[1] for v in kept.values()])
    pooled = float((w * e).sum() / w.sum())
    q = float((w * (e - pooled) ** 2).sum())
    df = len(kept) - 1
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    return HeterogeneityResult(test, q, df, chi2_sf(q, df), tuple(kept), i2, note)


# ---------------------------------------------------------------------------- sample size


def _check_unit(name: str, value: float, *, closed: bool = False) -> float:
    v = float(value)
    ok = 0.0 <= v <= 1.0 if closed else 0.0 < v < 1.0
    if not (math.isfinite(v) and ok):
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return v


@dataclass(frozen=True)
class ProportionPlan:
    """Films needed for a sensitivity or specificity CI (Buderer 1996).

    Attributes:
        measure: ``sensitivity`` or ``specificity``.
        expected: The value expected.
        half_width: The CI half-width wanted.
        prevalence: Expected share of positives among the films.
        level: Confidence level.
        cases: Positives (sensitivity) or negatives (specificity) needed.
        positives: Positives among ``films``.
        negatives: Negatives among ``films``.
        films: Films to collect at this prevalence.
        method: The formula, in words.
    """

    measure: str
    expected: float
    half_width: float
    prevalence: float
    level: float
    cases: int
    positives: int
    negatives: int
    films: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for JSON)."""
        return asdict(self)


def films_for_proportion(
    measure: str, expected: float, half_width: float, prevalence: float, level: float = 0.95
) -> ProportionPlan:
    """Buderer's rule: ``z^2 p (1 - p) / w^2`` cases of the class the measure is about (positives
    for sensitivity, negatives for specificity), and that divided by the class's share of films.

    E.g. sensitivity 0.90 +- 0.05 at 95 % needs ceil(1.96^2 x 0.09 / 0.0025) = 139 positives; at
    prevalence 0.30, 461 films. The normal-approximation width a site's Wilson CI will about have.
    """
    if measure not in ("sensitivity", "specificity"):
        raise ConfigError(f"measure must be sensitivity or specificity, got {measure!r}")
    p = _check_unit(measure, expected)
    w = _check_unit("half-width", half_width)
    prev = _check_unit("prevalence", prevalence)
    z = z_critical(level)
    exact = z * z * p * (1.0 - p) / (w * w)
    share = prev if measure == "sensitivity" else 1.0 - prev
    films = math.ceil(exact / share - 1e-9)
    cases = math.ceil(exact - 1e-9)
    # Buderer's N; of it, the measure's own class at least `cases` (rounding may leave one short)
    own = max(cases, round(films * share))
    films = max(films, own)
    pos, neg = (own, films - own) if measure == "sensitivity" else (films - own, own)
    return ProportionPlan(measure, p, w, prev, float(level), cases, pos, neg, pos + neg,
                          "Buderer 1996: n = z^2 p (1 - p) / w^2, / prevalence")  # fmt: skip


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC from its value and the class sizes:
    Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A) (the exponential-scores approximation)."""
    a = _check_unit("AUC", auc)
    if n_pos < 1 or n_neg < 1:
        raise ConfigError(f"need at least one case per class, got {n_pos} and {n_neg}")
    q1 = a / (2.0 - a)
    q2 = 2.0 * a * a / (1.0 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return math.sqrt(var)


@dataclass(frozen=True)
class AUCPlan:
    """Films needed for an AUC CI of a chosen half-width (Hanley & McNeil 1982).

    Attributes:
        expected: The AUC expected.
        half_width: The CI half-width wanted.
        prevalence: Expected share of positives.
        level: Confidence level.
        positives: Positives needed.
        negatives: Negatives needed.
        films: Films to collect.
        se: The standard error at that size.
        method: The formula, in words.
    """

    expected: float
    half_width: float
    prevalence: float
    level: float
    positives: int
    negatives: int
    films: int
    se: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for JSON)."""
        return asdict(self)


def films_for_auc(
    expected: float, half_width: float, prevalence: float, level: float = 0.95
) -> AUCPlan:
    """The fewest films, at this prevalence, whose Hanley-McNeil ``z * SE`` is at most the
    half-width (the SE falls monotonically with the films, so bisection finds it)."""
    a = _check_unit("AUC", expected)
    w = _check_unit("half-width", half_width)
    prev = _check_unit("prevalence", prevalence)
    z = z_critical(level)

    def split(films: int) -> tuple[int, int]:
        pos = min(max(1, round(films * prev)), films - 1)
        return pos, films - pos

    def ok(films: int) -> bool:
        return z * hanley_mcneil_se(a, *split(films)) <= w

    lo, hi = 2, 4
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > 10**9:
            raise ConfigError("no feasible number of films for this AUC half-width")
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    pos, neg = split(hi)
    return AUCPlan(a, w, prev, float(level), pos, neg, hi, hanley_mcneil_se(a, pos, neg),
                   "Hanley & McNeil 1982: z * SE(A, n+, n-) <= w")  # fmt: skip


# ---------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationResult:
    """Logistic recalibration of predicted probabilities against outcomes.

    Attributes:
        n: Cases.
        citl: Calibration-in-the-large: the intercept a of logit P(y) = a + LP (slope fixed at
            1, LP = the model's logit); 0 is ideal, > 0 means the model under-predicts.
        citl_ci: Its Wald CI.
        slope: b of logit P(y) = a + b LP; 1 is ideal, < 1 means too extreme predictions.
        slope_ci: Its Wald CI.
        mean_predicted: Mean predicted probability.
        observed: Observed share of positives.
        level: Confidence level.
    """

    n: int
    citl: float
    citl_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    mean_predicted: float
    observed: float
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for JSON)."""
        return asdict(self)


def _logit_of(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-12, 1.0 - 1e-12)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def _irls(x: FloatArray, y: FloatArray, offset: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood logistic regression (Newton / IRLS) with an offset: coefficients
    and their covariance (the inverse Fisher information). Diverges only under separation,
    which is reported as a DataError."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        eta = x @ beta + offset
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -60, 60)))
        wgt = mu * (1 - mu)
        info = x.T @ (x * wgt[:, None])
        step = np.linalg.solve(info, x.T @ (y - mu))
        beta = beta + step
        if not np.isfinite(beta).all() or np.abs(beta).max() > 1e6:
            raise DataError("logistic calibration did not converge: the outcomes are separated "
                            "by the scores")  # fmt: skip
        if np.abs(step).max() < 1e-10:
            break
    eta = x @ beta + offset
    mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -60, 60)))
    info = x.T @ (x * (mu * (1 - mu))[:, None])
    return beta, np.linalg.inv(info)


def logistic_calibration(
    y_true: npt.ArrayLike, probabilities: npt.ArrayLike, level: float = 0.95
) -> CalibrationResult:
    """Calibration-in-the-large and slope (Cox 1958; Van Calster et al. 2019's "weak"
    calibration), by maximum likelihood with Wald CIs — statsmodels' binomial GLM, without it.

    Why both: a detector's processing that shifts every logit moves the intercept (the operating
    point moves with it), one that stretches them moves the slope; AUC sees neither.
    """
    z = z_critical(level)
    y = labels_of(y_true).astype(np.float64)
    p = scores_of(probabilities, "probabilities")
    if y.size != p.size:
        raise DataError(f"{y.size} labels but {p.size} probabilities")
    if ((p < 0) | (p > 1)).any():
        raise DataError("probabilities must lie in [0, 1]")
    if y.size < 3 or y.min() == y.max():
        raise DataError("calibration needs both classes and at least 3 cases")
    lp = _logit_of(p)
    ones = np.ones((y.size, 1))
    a, cov_a = _irls(ones, y, lp)
    ab, cov_ab = _irls(np.column_stack([np.ones(y.size), lp]), y, np.zeros(y.size))
    se_a = math.sqrt(cov_a[0, 0])
    se_b = math.sqrt(cov_ab[1, 1])
    citl, slope = float(a[0]), float(ab[1])
    return CalibrationResult(
        n=int(y.size),
        citl=citl,
        citl_ci=(citl - z * se_a, citl + z * se_a),
        slope=slope,
        slope_ci=(slope - z * se_b, slope + z * se_b),
        mean_predicted=float(p.mean()),
        observed=float(y.mean()),
        level=float(level),
    )


def reliability_curve(
    y_true: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 10
) -> list[dict[str, float]]:
    """Observed share of positives against the mean prediction, in bins of equal size (deciles
    of the prediction by default: equal-width bins are mostly empty for a confident model), each
    with its Wilson CI."""
    y = labels_of(y_true)
    p = scores_of(probabilities, "probabilities")
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    order = np.argsort(p, kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, max(1, p.size))):
        if idx.size == 0:
            continue
        k = int(y[idx].sum())
        ci = wilson(k, int(idx.size))
        out.append({"mean_predicted": float(p[idx].mean()), "observed": ci.value,
                    "ci_low": ci.ci_low, "ci_high": ci.ci_high, "n": int(idx.size)})  # fmt: skip
    return out


def net_benefit(
    y_true: npt.ArrayLike, probabilities: npt.ArrayLike, thresholds: npt.ArrayLike
) -> dict[str, list[float]]:
    """Decision-curve net benefit (Vickers & Elkin 2006) at each threshold probability pt:
    model TP/n - FP/n * pt / (1 - pt) (positive iff p >= pt), treating all prevalence - (1 -
    prevalence) pt / (1 - pt), treating none 0 — as ``dcurves`` computes them."""
    y = labels_of(y_true)
    p = scores_of(probabilities, "probabilities")
    pts = np.asarray(thresholds, dtype=np.float64)
    if pts.size and not ((pts > 0) & (pts < 1)).all():
        raise ConfigError("threshold probabilities must lie strictly between 0 and 1")
    n = y.size
    prev = float(y.mean()) if n else math.nan
    model, treat_all = [], []
    for pt in pts:
        odds = pt / (1.0 - pt)
        call = p >= pt
        tp = int(np.count_nonzero(call & y))
        fp = int(np.count_nonzero(call & ~y))
        model.append(tp / n - fp / n * odds)
        treat_all.append(prev - (1.0 - prev) * odds)
    return {"threshold": [float(t) for t in pts], "model": model, "treat_all": treat_all,
            "treat_none": [0.0] * int(pts.size)}  # fmt: skip


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), nan kept as nan — statsmodels'
    ``multipletests(method="fdr_bh")``. Why: a validation tests heterogeneity in several fields
    and measures at once; unadjusted, one in twenty would look different by chance."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = ok.size
        q = p[order] * m / np.arange(1, m + 1)
        q = np.minimum.accumulate(q[::-1])[::-1]
        out[order] = np.minimum(q, 1.0)
    return [float(v) for v in out]
