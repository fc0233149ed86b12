"""Accuracy metrics that decide whether a deployed model is "within tolerance" of its FP32 source.

DESIGN.md ("Accuracy: what 'within tolerance' means here") asks for three things, all here:

* **Discrimination**: the AUC with a DeLong confidence interval (:func:`auc`, :func:`auc_ci`), and
  for FP32 vs quantised on the *same* cases the paired DeLong test of the difference
  (:func:`paired_auc_test`) whose CI lower bound is the non-inferiority gate (:func:`non_inferior`).
* **The operating point**: the ROC curve (:func:`roc_curve`), the threshold chosen on a tuning split
  (:func:`youden_threshold`, :func:`threshold_for_sensitivity`) and the confusion-matrix metrics at
  that threshold with Wilson intervals (:func:`binary_metrics`, :func:`wilson`).
* **Decision stability**: how many cases change decision between FP32 and quantised, and whether the
  change is systematic (:func:`decision_flips`, :func:`mcnemar`). A deployment that keeps the AUC
  but moves the operating point is a failure: the paired Δsensitivity and Δspecificity at the
  threshold (:func:`paired_proportion_diff`) judge that, and :func:`accuracy_gate` combines all
  three, each by its confidence interval.

Every function is pure and needs numpy only (a cart runs ``edgevcf verify``, and it has no
scipy): normal quantiles come from :class:`statistics.NormalDist`, tail probabilities from
:func:`math.erfc`.

Conventions used throughout:

* ``y_true`` holds 0/1 labels (bool, int, or floats that are exactly 0 or 1); 1 = positive (a fresh
  fracture). ``scores`` are finite reals where higher means "more likely positive".
* A case is called positive iff ``score >= threshold`` (scikit-learn's ROC convention). The ROC
  curve's thresholds are the observed score values, but an *operating* threshold returned by
  :func:`youden_threshold` or :func:`threshold_for_sensitivity` lies strictly between two adjacent
  distinct tuning scores (their midpoint), never on one: a threshold equal to a tuning case's score
  flips that case on any rounding difference between CPUs or engines.
* Ties between a positive and a negative count 1/2 in the AUC (Mann–Whitney), so the AUC equals the
  trapezoidal area under the ROC curve.
* Unusable inputs raise :class:`~edgevcf.errors.DataError`; bad parameters (confidence level,
  target sensitivity, tolerance, CI method) raise :class:`~edgevcf.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgevcf.errors import ConfigError, DataError

__all__ = [
    "AUCResult",
    "BinaryMetrics",
    "FlipResult",
    "GateResult",
    "PairedAUCResult",
    "PairedProportionDiff",
    "Proportion",
    "accuracy_gate",
    "auc",
    "auc_ci",
    "binary_metrics",
    "cases_for_margin",
    "decision_flips",
    "films_needed",
    "films_to_show_non_inferiority",
    "gate_for",
    "labels_of",
    "mcnemar",
    "non_inferior",
    "operating_threshold",
    "paired_auc_test",
    "paired_proportion_diff",
    "roc_curve",
    "scores_of",
    "threshold_envelope",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "wilson",
    "youden_threshold",
    "z_critical",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
CIMethod = Literal["normal", "logit"]

#: Below this many discordant pairs McNemar's p-value is the exact binomial one; the chi-square
#: approximation is poor for small counts (the usual rule of thumb: b + c < 25).
MCNEMAR_EXACT_BELOW = 25


# ------------------------------------------------------------------------------- validation


def _plural(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def _labels(y_true: npt.ArrayLike) -> BoolArray:
    """Labels as a 1-D bool array, refusing anything that is not a clean 0/1 vector.

    Why so strict: a label vector of {1, 2} or {-1, 1} (other tools' conventions) or a NaN from a
    broken CSV join would silently give a wrong AUC; here it is a DataError instead.
    """
    try:
        y = np.asarray(y_true)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise DataError(f"labels cannot be read as an array: {exc}") from exc
    if y.ndim != 1:
        raise DataError(f"labels must be a 1-D vector, got shape {y.shape}")
    if y.dtype == np.bool_:
        return y.copy()
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"labels must be 0/1 (bool or int), got dtype {y.dtype}")
    bad = ~((y == 0) | (y == 1))  # NaN compares unequal to both, so it is caught here too
    if bad.any():
        shown = sorted({str(v) for v in y[bad][:50].tolist()})[:5]
        raise DataError(
            f"labels must be 0/1, found {int(bad.sum())} other value(s), e.g. {', '.join(shown)}",
            hint="encode the positive class (fresh fracture) as 1 and everything else as 0",
        )
    return y == 1


def _scores(scores: npt.ArrayLike, name: str = "scores") -> FloatArray:
    """Scores as a 1-D float64 array of finite values (NaN/inf would make ranks meaningless)."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be real numbers: {exc}") from exc
    if s.ndim != 1:
        raise DataError(
            f"{name} must be a 1-D vector, got shape {s.shape}",
            hint="pass the positive-class score (or logit) per case, not a per-class matrix",
        )
    finite = np.isfinite(s)
    if not finite.all():
        n_bad = int((~finite).sum())
        first = int(np.flatnonzero(~finite)[0])
        raise DataError(
            f"{name} contain {n_bad} non-finite value(s) (NaN or inf), first at index {first}",
            hint="a NaN score usually means the model or its runtime failed on that case",
        )
    return s


def _check_lengths(n_a: int, n_b: int, name_b: str = "scores", name_a: str = "labels") -> None:
    if n_a != n_b:
        raise DataError(
            f"length mismatch: {n_a} {name_a} but {n_b} {name_b}",
            hint="pass one label and one score per case, in the same order",
        )


def _labelled(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, *, min_per_class: int, what: str
) -> tuple[BoolArray, FloatArray]:
    """Validate a (labels, scores) pair; require ``min_per_class`` cases of each class."""
    y = _labels(y_true)
    s = _scores(scores)
    _check_lengths(y.size, s.size)
    _require_classes(y, min_per_class, what)
    return y, s


def _require_classes(y: BoolArray, min_per_class: int, what: str) -> None:
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos < min_per_class or n_neg < min_per_class:
        need = (
            "at least one positive and one negative"
            if min_per_class == 1
            else f"at least {min_per_class} positives and {min_per_class} negatives"
        )
        raise DataError(
            f"{what} needs {need}; got {_plural(n_pos, 'positive')} and "
            f"{_plural(n_neg, 'negative')}",
            hint="evaluate on a split that contains both fresh fractures and non-fresh cases",
        )


def _z_critical(level: float) -> float:
    """Two-sided standard-normal quantile for a ``level`` confidence interval."""
    if not (isinstance(level, (int, float)) and math.isfinite(level) and 0.0 < level < 1.0):
        raise ConfigError(
            f"confidence level must lie strictly between 0 and 1, got {level!r}",
            hint="use e.g. 0.95 for a 95 % interval",
        )
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def z_critical(level: float) -> float:
    """Two-sided standard-normal quantile for a ``level`` CI (ConfigError outside (0, 1))."""
    return _z_critical(level)


def labels_of(y_true: npt.ArrayLike) -> BoolArray:
    """0/1 labels checked and as booleans (the rules every metric here applies)."""
    return _labels(y_true)


def scores_of(scores: npt.ArrayLike, name: str = "scores") -> FloatArray:
    """Finite scores checked and as float64 (the rules every metric here applies)."""
    return _scores(scores, name)


def _midranks(x: FloatArray) -> FloatArray:
    """Ranks 1..n of ``x`` with ties given their average rank (scipy's ``rankdata('average')``).

    O(n log n): one sort, then each tie group gets the mean of the ranks it spans. The values are
    halves of integers, so they (and their sums, below 2**52) are exact in float64.
    """
    n = x.size
    if n == 0:
        return np.empty(0, dtype=np.float64)
    order = np.argsort(x)
    xs = x[order]
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1], [True])))
    # group g spans sorted positions starts[g]..starts[g+1]-1, i.e. ranks starts[g]+1..starts[g+1]
    mean_rank = (starts[:-1] + 1 + starts[1:]) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, np.diff(starts))
    return ranks


def _as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


# ------------------------------------------------------------------------------------- AUC


def sigmoid(logits: npt.ArrayLike) -> FloatArray:
    """P(fresh) from logits, in float64 and without overflow warnings for large |logit|."""
    z = np.asarray(logits, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))), dtype=np.float64)


def auc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve, as the Mann–Whitney probability P(score+ > score-) + P(=)/2.

    Computed from midranks in O(n log n), so it is exact for tied scores (e.g. quantised models,
    whose outputs take few distinct values) and equals scikit-learn's ``roc_auc_score``.

    Args:
        y_true: 0/1 labels, 1 = positive.
        scores: Finite scores, higher = more likely positive.

    Returns:
        The AUC in [0, 1].

    Raises:
        DataError: Labels are not 0/1, scores are not finite, lengths differ, or a class is absent.
    """
    y, s = _labelled(y_true, scores, min_per_class=1, what="the AUC")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    rank_sum = float(_midranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _delong(y: BoolArray, score_rows: list[FloatArray]) -> tuple[FloatArray, FloatArray]:
    """AUCs and their DeLong covariance matrix, by the fast midrank algorithm of Sun & Xu (2014).

    DeLong et al. (1988) write the AUC of model r as the mean of structural components:
    ``V10[i]`` = fraction of negatives a positive ``i`` outranks (ties 1/2), and ``V01[j]`` =
    fraction of positives that outrank negative ``j``. The covariance of the AUCs is
    ``S10 / m + S01 / n`` with S10, S01 the sample covariance matrices (ddof = 1) of the
    components over the m positives and the n negatives. Sun & Xu obtain the components from three
    midrankings (within positives, within negatives, over all), i.e. in O(N log N) rather than the
    O(m n) of the pairwise definition.

    Returns:
        ``(aucs, cov)`` with ``aucs[r]`` the AUC of ``score_rows[r]`` and ``cov`` its k x k
        covariance matrix.
    """
    m = int(y.sum())
    n = y.size - m
    v10 = np.empty((len(score_rows), m))
    v01 = np.empty((len(score_rows), n))
    aucs = np.empty(len(score_rows))
    for r, s in enumerate(score_rows):
        pos, neg = s[y], s[~y]
        tx = _midranks(pos)
        ty = _midranks(neg)
        tz = _midranks(np.concatenate((pos, neg)))
        v10[r] = (tz[:m] - tx) / n  # negatives below each positive (ties 1/2), as a fraction
        v01[r] = 1.0 - (tz[m:] - ty) / m  # positives above each negative (ties 1/2)
        aucs[r] = (float(tz[:m].sum()) - m * (m + 1) / 2.0) / (m * n)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its DeLong variance and confidence interval.

    Attributes:
        auc: Mann–Whitney AUC (ties 1/2).
        variance: DeLong variance of the AUC.
        se: Its square root.
        ci_low: Lower CI bound (see ``method``).
        ci_high: Upper CI bound.
        n_pos: Number of positive cases.
        n_neg: Number of negative cases.
        level: Confidence level of the interval (e.g. 0.95).
        method: ``"normal"`` (Wald on the AUC scale, clipped to [0, 1]) or ``"logit"``.
    """

    auc: float
    variance: float
    se: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int
    level: float = 0.95
    method: str = "normal"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for the bundle manifest and JSON reports)."""
        return _as_dict(self)


def auc_ci(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    level: float = 0.95,
    method: CIMethod = "normal",
) -> AUCResult:
    """AUC with DeLong standard error and a confidence interval.

    Two intervals are offered because each fails differently near the edges:

    * ``"normal"`` (default, what pROC and most papers report): ``auc ± z·se``, clipped to [0, 1].
      Simple and comparable with published numbers, but symmetric, so near AUC = 1 it can reach
      past 1 (hence the clip) and under-cover.
    * ``"logit"``: the Wald interval of ``logit(auc)`` with delta-method SE ``se / (auc (1-auc))``,
      mapped back. It stays inside (0, 1) and is asymmetric as the sampling distribution is, which
      covers better for high AUCs and small samples.

    When the AUC is exactly 0 or 1 (perfect separation) every structural component is equal, the
    DeLong variance is 0 and both intervals collapse to the point; that is a known limit of DeLong's
    method, not evidence of certainty — report the sample sizes alongside.

    Args:
        y_true: 0/1 labels, 1 = positive.
        scores: Finite scores, higher = more likely positive.
        level: Confidence level in (0, 1).
        method: ``"normal"`` or ``"logit"``.

    Returns:
        The :class:`AUCResult`.

    Raises:
        DataError: Invalid labels/scores, or fewer than 2 cases of a class (the DeLong variance
            divides by ``count - 1`` in each class).
        ConfigError: ``level`` outside (0, 1) or an unknown ``method``.
    """
    z = _z_critical(level)
    if method not in ("normal", "logit"):
        raise ConfigError(f"unknown AUC CI method {method!r}", hint="use 'normal' or 'logit'")
    y, s = _labelled(y_true, scores, min_per_class=1, what="the AUC")
    _require_classes(y, 2, "the DeLong variance")
    aucs, cov = _delong(y, [s])
    a = float(aucs[0])
    var = max(float(cov[0, 0]), 0.0)
    se = math.sqrt(var)
    if method == "normal":
        lo, hi = max(0.0, a - z * se), min(1.0, a + z * se)
    elif a <= 0.0 or a >= 1.0:
        lo = hi = a
    else:
        centre = math.log(a / (1.0 - a))
        half = z * se / (a * (1.0 - a))
        lo, hi = _expit(centre - half), _expit(centre + half)
    n_pos = int(y.sum())
    return AUCResult(
        auc=a,
        variance=var,
        se=se,
        ci_low=lo,
        ci_high=hi,
        n_pos=n_pos,
        n_neg=int(y.size - n_pos),
        level=float(level),
        method=method,
    )


def _expit(x: float) -> float:
    """Logistic function without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class PairedAUCResult:
    """Paired DeLong comparison of two models scored on the same cases.

    Attributes:
        auc_a: AUC of model A (the reference, e.g. FP32).
        auc_b: AUC of model B (the candidate, e.g. INT8).
        diff: ``auc_b - auc_a`` (negative = B is worse).
        se_diff: DeLong standard error of ``diff``.
        ci_low: Lower bound of the CI of ``diff`` (the non-inferiority gate reads this).
        ci_high: Upper bound.
        z: ``diff / se_diff`` (0 when both are 0, ±inf when only ``se_diff`` is 0).
        p_value: Two-sided p-value of H0: AUC_A = AUC_B.
        correlation: Correlation of the two AUC estimates (nan when one variance is 0).
        n_pos: Number of positive cases.
        n_neg: Number of negative cases.
        level: Confidence level of the interval.
    """

    auc_a: float
    auc_b: float
    diff: float
    se_diff: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    correlation: float
    n_pos: int
    n_neg: int
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for the bundle manifest and JSON reports)."""
        return _as_dict(self)


def paired_auc_test(
    y_true: npt.ArrayLike,
    scores_a: npt.ArrayLike,
    scores_b: npt.ArrayLike,
    level: float = 0.95,
) -> PairedAUCResult:
    """Paired DeLong test and CI for the AUC difference ``B - A`` on the same cases.

    Why paired: FP32 and quantised outputs on the same images are strongly correlated, so the
    variance of the difference, ``var(A) + var(B) - 2 cov(A, B)``, is far smaller than the unpaired
    one; an unpaired comparison would wave through real losses. The covariance comes from the
    DeLong structural components of both models (see :func:`auc_ci`). The CI is the normal (Wald)
    interval ``diff ± z·se_diff``, not clipped.

    Degenerate case: if the difference has zero DeLong variance (e.g. B is a monotone transform of
    A, so every structural component agrees) the result is the point itself: ``se_diff = 0``, CI
    ``[diff, diff]``, and ``p = 1`` when ``diff == 0`` (``p = 0`` otherwise, which can only happen
    with perfectly separating or constant scores).

    Args:
        y_true: 0/1 labels, 1 = positive.
        scores_a: Scores of the reference model A.
        scores_b: Scores of the candidate model B, same cases in the same order.
        level: Confidence level in (0, 1).

    Returns:
        The :class:`PairedAUCResult`.

    Raises:
        DataError: Invalid labels/scores, lengths differ, or fewer than 2 cases of a class.
        ConfigError: ``level`` outside (0, 1).
    """
    zc = _z_critical(level)
    y = _labels(y_true)
    a = _scores(scores_a, "scores_a")
    b = _scores(scores_b, "scores_b")
    _check_lengths(y.size, a.size, "scores_a")
    _check_lengths(y.size, b.size, "scores_b")
    _require_classes(y, 2, "the DeLong variance")
    aucs, cov = _delong(y, [a, b])
    auc_a, auc_b = float(aucs[0]), float(aucs[1])
    diff = auc_b - auc_a
    var_a, var_b, cov_ab = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    var_diff = var_a + var_b - 2.0 * cov_ab
    # Rounding can leave a tiny (even negative) residue where the exact value is 0.
    if var_diff <= 1e-14 * (abs(var_a) + abs(var_b)):
        var_diff = 0.0
    se = math.sqrt(var_diff)
    if se == 0.0:
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0.0 else 0.0
        lo = hi = diff
    else:
        z = diff / se
        p = math.erfc(abs(z) / math.sqrt(2.0))
        lo, hi = diff - zc * se, diff + zc * se
    if var_a > 0.0 and var_b > 0.0:
        corr = min(1.0, max(-1.0, cov_ab / math.sqrt(var_a * var_b)))
    else:
        corr = math.nan
    n_pos = int(y.sum())
    return PairedAUCResult(
        auc_a=auc_a,
        auc_b=auc_b,
        diff=diff,
        se_diff=se,
        ci_low=lo,
        ci_high=hi,
        z=z,
        p_value=p,
        correlation=corr,
        n_pos=n_pos,
        n_neg=int(y.size - n_pos),
        level=float(level),
    )


def non_inferior(paired: PairedAUCResult, tolerance: float) -> bool:
    """Non-inferiority gate: is the CI lower bound of ``AUC_B - AUC_A`` above ``-tolerance``?

    This is the accuracy gate of DESIGN.md: a quantised model passes when we are confident (at the
    CI's level, one-sided at ``(1 + level) / 2``) that it loses less than ``tolerance`` AUC, rather
    than when its point estimate happens to be close. Too few cases therefore fail the gate, as
    they should.

    Args:
        paired: Result of :func:`paired_auc_test` with A = reference, B = candidate.
        tolerance: Largest acceptable AUC loss, >= 0 (e.g. 0.01).

    Returns:
        True if ``paired.ci_low > -tolerance``.

    Raises:
        ConfigError: ``tolerance`` negative or not finite.
    """
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(
            f"non-inferiority tolerance must be a finite number >= 0, got {tolerance!r}",
            hint="the tolerance is an AUC loss, e.g. 0.01",
        )
    return paired.ci_low > -tolerance


# ------------------------------------------------------------------------- ROC, thresholds


def _cumulative_counts(
    y: BoolArray, s: FloatArray
) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Distinct thresholds (decreasing) with true/false positive counts at ``score >= t``.

    The same construction as scikit-learn's ``_binary_clf_curve``: sort descending, keep the last
    index of each run of equal scores, and read cumulative positive counts there. Counts are
    integers, so comparisons made on them (Youden ties, sensitivity targets) are exact.
    """
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_run = np.flatnonzero(np.diff(s_sorted))
    idx = np.concatenate((last_of_run, [s.size - 1])).astype(np.int64)
    tps = np.cumsum(y_sorted, dtype=np.int64)[idx]
    fps = 1 + idx - tps
    return s_sorted[idx], tps, fps


def roc_curve(
    y_true: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC curve, one point per distinct score, as scikit-learn's ``drop_intermediate=False``.

    Matching scikit-learn's convention (thresholds decreasing, a first threshold of ``+inf`` giving
    the point (0, 0), positive iff ``score >= threshold``) lets reports and plots be checked
    against it, while keeping scikit-learn off the cart.

    Args:
        y_true: 0/1 labels, 1 = positive.
        scores: Finite scores, higher = more likely positive.

    Returns:
        ``(fpr, tpr, thresholds)``, each of length (distinct scores + 1).

    Raises:
        DataError: Invalid labels/scores, lengths differ, or a class is absent.
    """
    y, s = _labelled(y_true, scores, min_per_class=1, what="the ROC curve")
    thr, tps, fps = _cumulative_counts(y, s)
    tps = np.concatenate(([0], tps))
    fps = np.concatenate(([0], fps))
    fpr = fps / float(fps[-1])
    tpr = tps / float(tps[-1])
    thresholds = np.concatenate(([np.inf], thr))
    return fpr, tpr, thresholds


def youden_threshold(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    J weighs a missed fracture and a false alarm equally; use :func:`threshold_for_sensitivity`
    when the clinic fixes a sensitivity instead. J is compared in exact integer arithmetic
    (``tp·n_neg - fp·n_pos``) so ties are real ties, and among tied thresholds the *highest* is
    returned (fewest positive calls for the same J). Choose it on a tuning split, never on the one
    that confirms.

    Args:
        y_true: 0/1 labels, 1 = positive.
        scores: Finite scores, higher = more likely positive.

    Returns:
        A threshold ``t`` strictly between the lowest score called positive and the next lower
        distinct score (:func:`operating_threshold`); the rule is positive iff ``score >= t``.

    Raises:
        DataError: Invalid labels/scores, lengths differ, or a class is absent.
    """
    y, s = _labelled(y_true, scores, min_per_class=1, what="Youden's threshold")
    thr, tps, fps = _cumulative_counts(y, s)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    j_scaled = tps * n_neg - fps * n_pos  # = J · n_pos · n_neg, exact
    return operating_threshold(thr, int(np.argmax(j_scaled)))  # argmax: first = highest


def _target_inputs(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, target: float, what: str
) -> tuple[BoolArray, FloatArray]:
    """Checked labels and scores for a threshold chosen for a target ``what`` in (0, 1]."""
    if not (isinstance(target, (int, float)) and math.isfinite(target) and 0.0 < target <= 1.0):
        raise ConfigError(
            f"target {what} must lie in (0, 1], got {target!r}", hint="e.g. 0.9 for 90 %"
        )
    y = _labels(y_true)
    s = _scores(scores)
    _check_lengths(y.size, s.size)
    return y, s


def threshold_for_sensitivity(y_true: npt.ArrayLike, scores: npt.ArrayLike, target: float) -> float:
    """Highest threshold whose sensitivity reaches ``target``.

    The highest such threshold gives the best specificity among those meeting the target, which is
    how a screening operating point is usually fixed ("at least 90 % of fresh fractures flagged").
    Sensitivity ``k / n_pos`` is compared with a 1e-12 allowance, so that a target such as
    ``1 - 0.3`` (= 0.7000000000000001) is met by 7 of 10.

    Args:
        y_true: 0/1 labels, 1 = positive. Negatives are not needed.
        scores: Finite scores, higher = more likely positive.
        target: Required sensitivity in (0, 1].

    Returns:
        A threshold ``t`` strictly between the lowest score called positive and the next lower
        distinct score (:func:`operating_threshold`); the rule is positive iff ``score >= t``.

    Raises:
        ConfigError: ``target`` outside (0, 1].
        DataError: Invalid labels/scores, lengths differ, or no positive case.
    """
    y, s = _target_inputs(y_true, scores, target, "sensitivity")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise DataError(
            f"a sensitivity target needs positive cases; got 0 positives among {y.size} cases",
            hint="tune the threshold on a split that contains fresh fractures",
        )
    thr, tps, _ = _cumulative_counts(y, s)
    ok = tps / n_pos >= target - 1e-12
    return operating_threshold(thr, int(np.argmax(ok)))  # the last has sensitivity 1: some ok


def threshold_for_specificity(y_true: npt.ArrayLike, scores: npt.ArrayLike, target: float) -> float:
    """Lowest threshold whose specificity reaches ``target`` (the best sensitivity among those
    meeting it), strictly between two tuning scores like every operating threshold here; above
    the highest score (nothing called positive) when no lower one reaches the target."""
    y, s = _target_inputs(y_true, scores, target, "specificity")
    n_neg = int(y.size - y.sum())
    if n_neg == 0:
        raise DataError(
            f"a specificity target needs negative cases; got 0 negatives among {y.size} cases",
            hint="tune the threshold on a split that contains films without a fresh fracture",
        )
    thr, _, fps = _cumulative_counts(y, s)
    ok = np.flatnonzero((n_neg - fps) / n_neg >= target - 1e-12)
    if ok.size == 0:  # even the highest score's call costs too much specificity
        top = float(thr[0])
        return top + max(abs(top), 1.0) * 1e-6
    return operating_threshold(thr, int(ok[-1]))


def threshold_envelope(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, threshold: float, margin: float
) -> tuple[float, float]:
    """The thresholds whose tuning-split sensitivity and specificity each stay within
    ``margin`` of those at ``threshold``: the pre-specified range a site may later move the
    threshold in (what FDA change-control plans call the range of a change), fixed at export.

    Sensitivity falls and specificity rises with the threshold, so the range is an interval:
    from the lowest threshold keeping specificity (:func:`threshold_for_specificity`) to the
    highest keeping sensitivity (:func:`threshold_for_sensitivity`).
    """
    y = _labels(y_true)
    s = _scores(scores)
    _check_lengths(y.size, s.size)
    m = binary_metrics(y, s, threshold)
    sens_floor = m.sensitivity.value - margin
    spec_floor = m.specificity.value - margin
    low = threshold_for_specificity(y, s, spec_floor) if spec_floor > 0 else 0.0
    high = threshold_for_sensitivity(y, s, sens_floor) if sens_floor > 0 else 1.0
    return min(low, threshold), max(high, threshold)


def operating_threshold(distinct: npt.ArrayLike, i: int) -> float:
    """A threshold that calls exactly the scores ``>= distinct[i]`` positive, on none of them.

    ``distinct`` holds the distinct tuning scores in decreasing order. Any ``t`` in
    ``(distinct[i + 1], distinct[i]]`` makes the same calls on the tuning cases, but ``t =
    distinct[i]`` puts the case that defines it *on* the threshold, where a rounding difference of
    one ulp (another CPU's kernels, another engine: seen at 6.4e-7 between PyTorch and ONNX
    Runtime) flips its decision. The midpoint is as far from both neighbours as possible, in the
    space the threshold is applied in (the scores given). Below the lowest score there is no
    neighbour: the threshold then sits below it by half its gap to the next higher score (by 0.5
    when there is a single distinct score).

    Args:
        distinct: Distinct scores, strictly decreasing (as from the ROC construction).
        i: Index of the lowest score still called positive.

    Returns:
        The threshold, strictly between two adjacent distinct scores whenever floating point has
        a value there (two adjacent doubles have none; then ``distinct[i]`` is returned).
    """
    d = np.asarray(distinct, dtype=np.float64)
    hi = float(d[i])
    below = float(d[i + 1]) if i + 1 < d.size else None
    gap = float(d[i - 1]) - hi if i > 0 else 1.0
    lo = hi - gap if below is None else below
    mid = hi + (lo - hi) / 2.0  # no overflow for large scores
    return mid if lo < mid < hi else hi


# ----------------------------------------------------------------- proportions, confusion


@dataclass(frozen=True)
class Proportion:
    """A proportion ``k / n`` with its Wilson score interval.

    Attributes:
        value: ``k / n`` (nan when ``n == 0``).
        ci_low: Lower Wilson bound (nan when ``n == 0``).
        ci_high: Upper Wilson bound (nan when ``n == 0``).
        k: Successes.
        n: Trials.
    """

    value: float
    ci_low: float
    ci_high: float
    k: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for the bundle manifest and JSON reports)."""
        return _as_dict(self)


def wilson(k: int, n: int, level: float = 0.95) -> Proportion:
    """Proportion with the Wilson score interval.

    Wilson rather than Wald because sensitivities near 1 on a few dozen positives are the normal
    case here, and the Wald interval collapses to zero width at ``k = n`` and leaves [0, 1]; Wilson
    keeps sensible coverage there and stays inside [0, 1]. ``n == 0`` (e.g. no positive calls, so
    no PPV) gives nan rather than an error, so that a report can still be written.

    Args:
        k: Number of successes, ``0 <= k <= n``.
        n: Number of trials, ``n >= 0``.
        level: Confidence level in (0, 1).

    Returns:
        The :class:`Proportion`.

    Raises:
        DataError: ``k`` or ``n`` not integers, negative, or ``k > n``.
        ConfigError: ``level`` outside (0, 1).
    """
    z = _z_critical(level)
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise DataError(f"Wilson interval: {name} must be an integer count, got {v!r}")
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise DataError(f"Wilson interval needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Proportion(math.nan, math.nan, math.nan, 0, 0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Proportion(p, lo, hi, k, n)


@dataclass(frozen=True)
class BinaryMetrics:
    """Confusion matrix and derived metrics at one threshold (positive iff ``score >= threshold``).

    Attributes:
        threshold: The decision threshold.
        tp: True positives.
        fp: False positives.
        tn: True negatives.
        fn: False negatives.
        sensitivity: ``tp / (tp + fn)`` with Wilson CI.
        specificity: ``tn / (tn + fp)`` with Wilson CI.
        accuracy: ``(tp + tn) / n`` with Wilson CI.
        precision: PPV, ``tp / (tp + fp)`` with Wilson CI.
        npv: ``tn / (tn + fn)`` with Wilson CI.
        f1: ``2 tp / (2 tp + fp + fn)``; nan when there is no positive case and no positive call.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: Proportion
    specificity: Proportion
    accuracy: Proportion
    precision: Proportion
    npv: Proportion
    f1: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict, proportions as nested dicts (for manifests and JSON reports)."""
        return _as_dict(self)


def binary_metrics(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, threshold: float, level: float = 0.95
) -> BinaryMetrics:
    """Sensitivity, specificity, accuracy, PPV, NPV and F1 at ``threshold``, with Wilson CIs.

    The rule is positive iff ``score >= threshold``, the convention of :func:`roc_curve` and the
    threshold selectors, so a threshold chosen there reproduces its ROC point here. One class may be
    absent (e.g. a subgroup without fractures); the metrics that divide by it are then nan.

    Args:
        y_true: 0/1 labels, 1 = positive.
        scores: Finite scores, higher = more likely positive.
        threshold: Decision threshold (not NaN; ±inf allowed).
        level: Confidence level of the Wilson intervals.

    Returns:
        The :class:`BinaryMetrics`.

    Raises:
        DataError: Invalid labels/scores or lengths differ.
        ConfigError: ``threshold`` is NaN or ``level`` outside (0, 1).
    """
    _z_critical(level)
    thr = _threshold(threshold)
    y = _labels(y_true)
    s = _scores(scores)
    _check_lengths(y.size, s.size)
    pred = s >= thr
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = int(y.size - tp - fp - fn)
    f1_den = 2 * tp + fp + fn
    return BinaryMetrics(
        threshold=thr,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        sensitivity=wilson(tp, tp + fn, level),
        specificity=wilson(tn, tn + fp, level),
        accuracy=wilson(tp + tn, y.size, level),
        precision=wilson(tp, tp + fp, level),
        npv=wilson(tn, tn + fn, level),
        f1=2 * tp / f1_den if f1_den else math.nan,
    )


def _threshold(threshold: float, name: str = "threshold") -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {threshold!r}") from exc
    if math.isnan(t):
        raise ConfigError(f"{name} is NaN", hint="use a threshold chosen on the tuning split")
    return t


# ------------------------------------------------------------------------ decision flips


def mcnemar(b: int, c: int, *, exact: bool = False) -> float:
    """Two-sided McNemar p-value for paired binary outcomes with discordant counts ``b`` and ``c``.

    Only the discordant pairs carry information about a systematic difference between two raters
    on the same cases (FP32 vs INT8 decisions; or a model vs a clinician's reads, with b = model
    right & reader wrong, c = model wrong & reader right). Under H0 each discordant pair falls
    either way with probability 1/2. For ``b + c < 25`` the exact binomial test is used
    (``min(1, 2 P(X <= min(b, c)))``, X ~ Bin(b + c, 1/2)), computed in exact integer arithmetic;
    above, the chi-square statistic with continuity correction ``max(0, |b - c| - 1)**2 / (b + c)``
    on 1 df, whose survival function is ``erfc(sqrt(x / 2))``. ``b + c == 0`` gives 1.
    ``exact``: the exact binomial test for any number of pairs (summed in log space), as a
    shadow comparison reports it.

    Args:
        b: Discordant pairs one way (>= 0).
        c: Discordant pairs the other way (>= 0).

    Returns:
        The two-sided p-value in [0, 1].

    Raises:
        DataError: ``b`` or ``c`` not a non-negative integer.
    """
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise DataError(f"McNemar: {name} must be a non-negative integer count, got {v!r}")
    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    if n < MCNEMAR_EXACT_BELOW:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        return min(1.0, 2 * tail / 2**n)
    if exact:
        k = np.arange(min(b, c) + 1)
        logpmf = (math.lgamma(n + 1) - n * math.log(2.0)
                  - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k]))  # fmt: skip
        top = float(logpmf.max())
        return min(1.0, 2.0 * math.exp(top) * float(np.exp(logpmf - top).sum()))
    stat = max(0, abs(b - c) - 1) ** 2 / n
    return math.erfc(math.sqrt(stat / 2.0))


@dataclass(frozen=True)
class FlipResult:
    """How many cases change decision between two models at their thresholds.

    Attributes:
        n: Number of cases.
        flips: Cases whose decision differs (``a_pos_b_neg + a_neg_b_pos``).
        flip_rate: ``flips / n`` with Wilson CI.
        a_pos_b_neg: Positive by A, negative by B.
        a_neg_b_pos: Negative by A, positive by B.
        mcnemar_p: McNemar p-value on (a_pos_b_neg, a_neg_b_pos): do flips lean one way?
    """

    n: int
    flips: int
    flip_rate: Proportion
    a_pos_b_neg: int
    a_neg_b_pos: int
    mcnemar_p: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for the bundle manifest and JSON reports)."""
        return _as_dict(self)


def decision_flips(
    scores_a: npt.ArrayLike,
    scores_b: npt.ArrayLike,
    threshold_a: float,
    threshold_b: float | None = None,
    level: float = 0.95,
) -> FlipResult:
    """Decision flips between model A (e.g. FP32) and B (e.g. INT8) on the same cases.

    A quantised model can keep its AUC yet shift its score scale, moving the bundled operating
    point; the flip rate measures that directly and needs no labels. Each model decides at its own
    threshold (positive iff ``score >= threshold``), because a deployment may re-tune B's threshold;
    by default B uses A's. McNemar's test says whether the flips are one-sided (B calls more, or
    fewer, positives), which is what changes sensitivity and specificity.

    Args:
        scores_a: Scores of model A.
        scores_b: Scores of model B, same cases in the same order.
        threshold_a: A's decision threshold.
        threshold_b: B's threshold; defaults to ``threshold_a``.
        level: Confidence level of the flip-rate interval.

    Returns:
        The :class:`FlipResult`.

    Raises:
        DataError: Scores not finite or lengths differ.
        ConfigError: A threshold is NaN or ``level`` outside (0, 1).
    """
    _z_critical(level)
    ta = _threshold(threshold_a, "threshold_a")
    tb = ta if threshold_b is None else _threshold(threshold_b, "threshold_b")
    a = _scores(scores_a, "scores_a")
    b = _scores(scores_b, "scores_b")
    _check_lengths(a.size, b.size, "scores_b", "scores_a")
    pos_a = a >= ta
    pos_b = b >= tb
    a_pos_b_neg = int(np.count_nonzero(pos_a & ~pos_b))
    a_neg_b_pos = int(np.count_nonzero(~pos_a & pos_b))
    flips = a_pos_b_neg + a_neg_b_pos
    return FlipResult(
        n=int(a.size),
        flips=flips,
        flip_rate=wilson(flips, int(a.size), level),
        a_pos_b_neg=a_pos_b_neg,
        a_neg_b_pos=a_neg_b_pos,
        mcnemar_p=mcnemar(a_pos_b_neg, a_neg_b_pos),
    )


# ------------------------------------------------------------------ paired proportions


@dataclass(frozen=True)
class PairedProportionDiff:
    """Difference of two proportions measured on the same cases (e.g. INT8's sensitivity minus
    FP32's, over the same positives), with Newcombe's hybrid score interval for paired data.

    Attributes:
        diff: ``p_b - p_a`` (negative = B is worse).
        ci_low: Lower bound of the CI of ``diff`` (the non-inferiority gate reads this).
        ci_high: Upper bound.
        p_a: A's proportion (e.g. FP32's sensitivity).
        p_b: B's proportion.
        n: Cases (e.g. the positives).
        a_only: Cases A got right and B wrong (B's losses).
        b_only: Cases B got right and A wrong (B's gains).
        mcnemar_p: McNemar's p-value on (``a_only``, ``b_only``).
        level: Confidence level of the interval.
        method: The interval's name.
    """

    diff: float
    ci_low: float
    ci_high: float
    p_a: float
    p_b: float
    n: int
    a_only: int
    b_only: int
    mcnemar_p: float
    level: float = 0.95
    method: str = "Newcombe hybrid score, paired (method 10)"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (for the bundle manifest and JSON reports)."""
        return _as_dict(self)


def paired_proportion_diff(
    right_a: npt.ArrayLike, right_b: npt.ArrayLike, level: float = 0.95
) -> PairedProportionDiff:
    """``P(B right) - P(A right)`` over the same cases with Newcombe's (1998) method 10 interval.

    Sensitivity and specificity of two models on the same films are paired proportions: only the
    discordant cases (McNemar's cells) carry the difference, and the interval must use the
    pairing. Newcombe's hybrid score interval combines the Wilson intervals of both proportions
    with their correlation (phi of the 2x2 table with Newcombe's continuity correction; 0 where it
    is undefined, e.g. both models right on every case); unlike Wald's it keeps coverage at
    proportions near 1 and does not collapse to zero width when nothing is discordant: zero
    discordant cases among 20 do not show that two models agree on 95 % of cases. ``n == 0``
    gives nan.

    Raises:
        DataError: The arrays differ in length or are not one-dimensional booleans.
        ConfigError: ``level`` outside (0, 1).
    """
    _z_critical(level)
    a = np.asarray(right_a)
    b = np.asarray(right_b)
    if a.ndim != 1 or b.ndim != 1 or a.dtype != np.bool_ or b.dtype != np.bool_:
        raise DataError("paired proportions need two one-dimensional boolean arrays")
    _check_lengths(a.size, b.size, "right_b", "right_a")
    n = int(a.size)
    both = int(np.count_nonzero(a & b))
    a_only = int(np.count_nonzero(a & ~b))
    b_only = int(np.count_nonzero(~a & b))
    neither = n - both - a_only - b_only
    mc = mcnemar(a_only, b_only)
    if n == 0:
        nan = math.nan
        return PairedProportionDiff(nan, nan, nan, nan, nan, 0, 0, 0, mc, level)
    wa = wilson(both + a_only, n, level)
    wb = wilson(both + b_only, n, level)
    pa, pb = wa.value, wb.value
    # phi with Newcombe's continuity correction: ad - bc above n/2 reduced by n/2, 0..n/2 -> 0
    den = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    raw = both * neither - a_only * b_only
    cross = raw - n / 2 if raw > n / 2 else (0.0 if raw >= 0 else float(raw))
    phi = cross / math.sqrt(den) if den else 0.0
    # distances below and above the estimate: each side combines one model's Wilson distance
    # towards that side with the other's away from it, discounted by their correlation
    lo_b, hi_a = pb - wb.ci_low, wa.ci_high - pa
    hi_b, lo_a = wb.ci_high - pb, pa - wa.ci_low
    d_lo = math.sqrt(max(0.0, lo_b**2 - 2 * phi * lo_b * hi_a + hi_a**2))
    d_hi = math.sqrt(max(0.0, hi_b**2 - 2 * phi * hi_b * lo_a + lo_a**2))
    diff = pb - pa
    return PairedProportionDiff(
        diff=diff,
        ci_low=max(-1.0, diff - d_lo),
        ci_high=min(1.0, diff + d_hi),
        p_a=pa,
        p_b=pb,
        n=n,
        a_only=a_only,
        b_only=b_only,
        mcnemar_p=mc,
        level=level,
    )


# ------------------------------------------------------------------------- the accuracy gate


@dataclass(frozen=True)
class GateResult:
    """The accuracy gate of a candidate (e.g. INT8) against its reference (e.g. FP32) on the
    same cases, every criterion judged by a confidence interval, none by one image.

    Attributes:
        paired: Paired ΔAUC (candidate - reference), or None when a class is missing.
        flips: Decision flips at the thresholds.
        max_auc_drop: The AUC non-inferiority margin.
        max_flip_rate: The flip rate the candidate must not be shown to exceed.
        auc_ok: ΔAUC's CI lower bound above ``-max_auc_drop`` (None: AUC not measurable).
        flip_ok: The flip rate's Wilson CI reaches down to ``max_flip_rate`` or below (it is not
            shown to exceed it); the point estimate is reported in ``flips``.
        passed: All criteria (None when AUC is not measurable).
        sensitivity: Paired Δsensitivity at the operating point (None: no positives).
        specificity: Paired Δspecificity at the operating point (None: no negatives).
        max_sensitivity_drop: Δsensitivity's non-inferiority margin.
        max_specificity_drop: Δspecificity's non-inferiority margin.
        point_ok: Both Δ CI lower bounds above their margins (None: not measurable).
        failed: The criteria that failed (``auc``, ``sensitivity``, ``specificity``, ``flips``).
        films_needed: For each failed CI criterion whose *point estimate* lies within its margin
            (the CI spans the margin: inconclusive, not shown inferior), about how many films of
            this mix would show non-inferiority at this Δ and spread
            (:func:`films_to_show_non_inferiority`); the gate still fails.
    """

    paired: PairedAUCResult | None
    flips: FlipResult
    max_auc_drop: float
    max_flip_rate: float
    auc_ok: bool | None
    flip_ok: bool
    passed: bool | None
    sensitivity: PairedProportionDiff | None = None
    specificity: PairedProportionDiff | None = None
    max_sensitivity_drop: float = 0.05
    max_specificity_drop: float = 0.05
    point_ok: bool | None = None
    failed: tuple[str, ...] = ()
    films_needed: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def inconclusive(self) -> tuple[str, ...]:
        """The failed criteria a larger split could still pass (see ``films_needed``)."""
        return tuple(k for k in self.failed if k in self.films_needed)

    def to_dict(self) -> dict[str, Any]:
        """The gate's verdict and its criteria (for manifests and JSON reports)."""
        return {
            "max_auc_drop": self.max_auc_drop,
            "max_flip_rate": self.max_flip_rate,
            "max_sensitivity_drop": self.max_sensitivity_drop,
            "max_specificity_drop": self.max_specificity_drop,
            "flip_rate": self.flips.flip_rate.value,
            "flip_rate_ci": [self.flips.flip_rate.ci_low, self.flips.flip_rate.ci_high],
            "flip_ok": self.flip_ok,
            "auc_ok": self.auc_ok,
            "sensitivity": self.sensitivity.to_dict() if self.sensitivity else None,
            "specificity": self.specificity.to_dict() if self.specificity else None,
            "point_ok": self.point_ok,
            "failed": list(self.failed),
            "inconclusive": list(self.inconclusive),
            "films_needed": dict(self.films_needed),
            "passed": self.passed,
            "rule": GATE_RULE,
        }


#: What decides the gate, in words (recorded with every verdict).
GATE_RULE = (
    "pass = ΔAUC CI low > -max_auc_drop and Δsensitivity, Δspecificity CI low > -their margins "
    "(paired, at the bundled threshold) and the flip rate's CI low <= max_flip_rate"
)


def films_to_show_non_inferiority(n: int, diff: float, ci_low: float, margin: float) -> int | None:
    """About how many cases would show ``diff`` non-inferior at ``margin``, or None when the
    point estimate itself is at or below ``-margin`` (no number of cases would) or it is shown.

    Why: a gate failed with a CI that *spans* the margin is inconclusive, not a measured loss
    (MobileNetV3-L's INT8: ΔAUC -0.0043, CI low -0.0137 on 306 films; -0.0012, CI low -0.0036 on
    2,728 independent ones). The CI half-width shrinks as 1 / sqrt(n), so the lower bound
    reaches the margin at ``n * (half-width / (diff + margin))**2``, at this Δ and spread; an
    estimate, not a promise: ``diff`` itself is uncertain.
    """
    if ci_low > -margin:
        return None
    return cases_for_margin(n, diff, ci_low, margin)


def cases_for_margin(n: int, diff: float, ci_low: float, margin: float) -> int | None:
    """Cases at which a CI of this spread (``diff - ci_low`` on ``n`` cases, shrinking as 1 /
    sqrt(n)) would have its lower bound at ``-margin``; None when ``diff`` is itself at or
    below ``-margin``. Also a site's plan, from a pilot whose CI already clears the margin."""
    room = diff + margin
    if room <= 0:
        return None
    return math.ceil(n * ((diff - ci_low) / room) ** 2)


def films_needed(
    failed: Sequence[str],
    n_pos: int,
    n: int,
    criteria: Mapping[str, tuple[float, float, float]],
) -> dict[str, int]:
    """For each failed criterion of ``criteria`` (name -> (Δ, CI low, margin)) that a larger
    split could pass, about how many films of this mix (``n`` films, ``n_pos`` positive) would
    show it non-inferior: sensitivity scales with the positives, specificity with the negatives.
    Also for re-reading a stored verdict (e.g. a benchmark's JSON) that predates the field."""
    cases = {"auc": n, "sensitivity": n_pos, "specificity": n - n_pos}
    out = {}
    for k, (diff, low, margin) in criteria.items():
        need = films_to_show_non_inferiority(cases[k], diff, low, margin) if k in failed else None
        if need is not None and cases[k]:
            out[k] = math.ceil(need * n / cases[k])
    return out


def accuracy_gate(
    y_true: npt.ArrayLike,
    ref_scores: npt.ArrayLike,
    scores: npt.ArrayLike,
    threshold: float,
    max_auc_drop: float,
    max_flip_rate: float,
    candidate_threshold: float | None = None,
    *,
    max_sensitivity_drop: float = 0.05,
    max_specificity_drop: float = 0.05,
) -> GateResult:
    """The one accuracy gate, shared by export, ``edgevcf bench`` and the reference benchmarks.

    Judged as a diagnostic-accuracy study judges a new test against the standard on the same
    patients, each criterion by its 95 % CI (:data:`GATE_RULE`):

    * discrimination: paired DeLong ΔAUC non-inferior at ``max_auc_drop`` (:func:`non_inferior`);
    * the operating point: paired Δsensitivity and Δspecificity at the bundled threshold
      (:func:`paired_proportion_diff`), each non-inferior at its margin — what a clinician sees
      change;
    * decision stability: the candidate fails when the flip rate is *shown* to exceed
      ``max_flip_rate`` (its Wilson CI lies wholly above it). The point estimate is reported, not
      decisive: 6 flips in 295 (2.03 %) against a 2 % limit is one image, not evidence.

    A CI criterion that fails with its point estimate inside the margin is recorded as
    inconclusive with the films that would decide it (``films_needed``); it fails all the same.

    The candidate decides at ``threshold`` unless ``candidate_threshold``. A split without both
    classes cannot measure AUC: ``auc_ok``, ``point_ok`` and ``passed`` are then None.
    """
    y = _labels(y_true)
    flips = decision_flips(ref_scores, scores, threshold, candidate_threshold)
    flip_ok = not flips.flip_rate.ci_low > max_flip_rate
    paired = auc_ok = passed = point_ok = None
    sens = spec = None
    failed: list[str] = []
    needed: dict[str, int] = {}
    if 0 < int(y.sum()) < y.size:
        ref = _scores(ref_scores, "ref_scores")
        cand = _scores(scores, "scores")
        t_ref = _threshold(threshold)
        t_cand = t_ref if candidate_threshold is None else _threshold(candidate_threshold)
        call_ref, call_cand = ref >= t_ref, cand >= t_cand
        sens = paired_proportion_diff(call_ref[y], call_cand[y])
        spec = paired_proportion_diff(~call_ref[~y], ~call_cand[~y])
        paired = paired_auc_test(y, ref_scores, scores)
        auc_ok = non_inferior(paired, max_auc_drop)
        sens_ok = sens.ci_low > -max_sensitivity_drop
        spec_ok = spec.ci_low > -max_specificity_drop
        point_ok = bool(sens_ok and spec_ok)
        failed += [k for k, ok in (("auc", auc_ok), ("sensitivity", sens_ok),
                                   ("specificity", spec_ok)) if not ok]  # fmt: skip
        passed = bool(auc_ok and point_ok and flip_ok)
        needed = films_needed(
            failed,
            int(y.sum()),
            y.size,
            {
                "auc": (paired.diff, paired.ci_low, max_auc_drop),
                "sensitivity": (sens.diff, sens.ci_low, max_sensitivity_drop),
                "specificity": (spec.diff, spec.ci_low, max_specificity_drop),
            },
        )
    if not flip_ok:
        failed.append("flips")
    return GateResult(
        paired, flips, max_auc_drop, max_flip_rate, auc_ok, flip_ok, passed,
        sens, spec, max_sensitivity_drop, max_specificity_drop, point_ok, tuple(failed), needed,
    )  # fmt: skip


def gate_for(
    tolerance: Any,
    y_true: npt.ArrayLike,
    ref_scores: npt.ArrayLike,
    scores: npt.ArrayLike,
    threshold: float,
    candidate_threshold: float | None = None,
) -> GateResult:
    """:func:`accuracy_gate` at a profile's tolerance (a ``Tolerance`` or its dict, e.g. from a
    bundle's manifest; margins a bundle exported before they existed take today's defaults)."""
    get = tolerance.get if isinstance(tolerance, dict) else lambda k, d: getattr(tolerance, k, d)
    return accuracy_gate(
        y_true,
        ref_scores,
        scores,
        threshold,
        float(get("max_auc_drop", 0.01)),
        float(get("max_flip_rate", 0.02)),
        candidate_threshold,
        max_sensitivity_drop=float(get("max_sensitivity_drop", 0.05)),
        max_specificity_drop=float(get("max_specificity_drop", 0.05)),
    )
