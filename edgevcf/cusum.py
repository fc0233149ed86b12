"""Two-sided CUSUM charts for the drift watch, with their in-control run length computed.

AIM-CU (FDA DIDSR) watches one daily metric with a two-sided CUSUM of the standardised value,
``k = 0.5`` and ``h = 5``: for normally distributed daily values an in-control average run length
(ARL) of about 465 days between false alarms. A cart's daily *rates* are not normal: at 40 films
a day a refusal rate of 1 % gives 0, 1 or 2 refusals, and ``h = 5`` on that standardised count
alarms several times as often. So a chart here keeps ``k = 0.5`` and takes the ``h`` whose
in-control ARL, computed for the statistic's own distribution (a binomial count, or a normal
mean), equals the normal chart's at ``h = 5`` (:func:`calibrate_h`). The ARL is Brook & Evans'
(1972) Markov chain on the discretised CUSUM (:func:`one_sided_arl`), and the two sides combine as
``1/ARL = 1/ARL+ + 1/ARL-`` (Lucas & Crosier 1982); both are checked against Lucas & Crosier's
published table in ``tests/unit/test_cusum.py``.

numpy and :mod:`math` only: the node runs this on the cart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Cdf = Callable[[FloatArray], FloatArray]

#: AIM-CU's defaults: reference value and decision interval, in standard deviations.
K_DEFAULT = 0.5
H_DEFAULT = 5.0
_STATES = 300  # cells of the discretised CUSUM; Lucas & Crosier's table is met within 1 %
#: Cells when calibrating h (hundreds of run lengths): 930.6 instead of 930.8 at k 0.5, h 5.
CALIBRATION_STATES = 150


def _phi(x: FloatArray) -> FloatArray:
    """Standard normal CDF."""
    erfc = np.frompyfunc(math.erfc, 1, 1)
    return np.asarray(0.5 * erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2)), np.float64)


def one_sided_arl(cdf: Cdf, h: float, states: int = _STATES) -> float:
    """ARL of ``S = max(0, S + y)`` started at 0, signalling when ``S > h``, for i.i.d.
    increments ``y`` with distribution function ``cdf`` (Brook & Evans 1972: ``states`` cells of
    width ``2h / (2 states - 1)``, cell 0 holding every value below half a cell)."""
    if h <= 0:
        raise ValueError("h must be > 0")
    if float(cdf(np.zeros(1))[0]) >= 1.0:
        return math.inf  # the sum can never grow: no signal, ever
    m = states
    w = 2.0 * h / (2 * m - 1)
    d = np.arange(-(m - 1), m, dtype=np.float64)  # j - i
    band = cdf((d + 0.5) * w) - cdf((d - 0.5) * w)
    i = np.arange(m)[:, None]
    j = np.arange(m)[None, :]
    r = band[(j - i) + m - 1]
    r[:, 0] = cdf((0.5 - np.arange(m, dtype=np.float64)) * w)
    try:
        arl = np.linalg.solve(np.eye(m) - r, np.ones(m))
    except np.linalg.LinAlgError:  # no way past h from some cell
        return math.inf
    return float(arl[0]) if np.isfinite(arl[0]) and arl[0] > 0 else math.inf


def _two_sided(up: float, down: float) -> float:
    rate = 1.0 / up + 1.0 / down
    return math.inf if rate == 0 else 1.0 / rate


def normal_arl(
    k: float, h: float, mu: float = 0.0, *, sided: str = "two", states: int = _STATES
) -> float:
    """ARL of a CUSUM of N(``mu``, 1) values (one side: the upper; two: both, as the watch
    runs them)."""
    up = one_sided_arl(lambda t: _phi(t + k - mu), h, states)
    if sided == "one":
        return up
    return _two_sided(up, one_sided_arl(lambda t: _phi(t + k + mu), h, states))


def _binom_cdf_table(n: int, p: float) -> FloatArray:
    """P(X <= x) for x = 0..n, X ~ Binomial(n, p), from log-pmfs (exact to float precision)."""
    x = np.arange(n + 1)
    if p <= 0 or p >= 1:
        pmf = (x == (0 if p <= 0 else n)).astype(np.float64)
    else:
        logpmf = (
            np.array([math.lgamma(n + 1) - math.lgamma(v + 1) - math.lgamma(n - v + 1) for v in x])
            + x * math.log(p)
            + (n - x) * math.log1p(-p)
        )
        pmf = np.exp(logpmf)
    return np.asarray(np.minimum(np.cumsum(pmf), 1.0), dtype=np.float64)


def binomial_arl(
    n: int, p0: float, k: float, h: float, p: float | None = None, states: int = _STATES
) -> float:
    """Two-sided ARL of a CUSUM of ``z = (x - n p0) / sqrt(n p0 (1 - p0))`` for counts
    ``x ~ Binomial(n, p)`` (``p`` defaults to ``p0``: in control)."""
    p = p0 if p is None else p
    sd = math.sqrt(n * p0 * (1 - p0))
    if sd == 0:
        return math.inf
    table = _binom_cdf_table(n, p)

    def at_most(x: FloatArray) -> FloatArray:  # P(X <= x) for real x
        idx = np.floor(x + 1e-9).astype(np.int64)
        out = np.where(idx < 0, 0.0, table[np.clip(idx, 0, n)])
        return np.asarray(out, dtype=np.float64)

    up = one_sided_arl(lambda t: at_most(n * p0 + (t + k) * sd), h, states)
    # lower side: y = -z - k <= t  <=>  x >= n p0 - (t + k) sd
    down = one_sided_arl(
        lambda t: 1.0 - at_most(np.ceil(n * p0 - (t + k) * sd - 1e-9) - 1), h, states
    )
    return _two_sided(up, down)


def calibrate_h(arl: Callable[[float], float], target: float, lo: float = 0.5,
                hi: float = 30.0) -> float:  # fmt: skip
    """The smallest ``h`` (to 0.01) whose in-control ARL reaches ``target`` (ARL grows with
    ``h``; for a discrete statistic in steps)."""
    if arl(hi) < target:
        return hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if arl(mid) >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 0.01:
            break
    return round(hi, 2)


def design_arl(k: float = K_DEFAULT, h: float = H_DEFAULT) -> float:
    """The in-control ARL the watch aims at: AIM-CU's chart on normal values (about 465)."""
    return normal_arl(k, h)


@dataclass
class Cusum:
    """A two-sided CUSUM of standardised values (``upper``/``lower`` are its two sums).

    ``update`` returns ``"up"`` or ``"down"`` when a side crosses ``h`` (both sums then restart
    at 0: an alarm is raised once, and the chart watches afresh), else None. ``since`` is the
    number of the last period at which the signalling side was 0 — where the change most likely
    began (Page's estimate of the change point).
    """

    k: float = K_DEFAULT
    h: float = H_DEFAULT
    upper: float = 0.0
    lower: float = 0.0
    periods: int = 0
    upper_since: int = 0
    lower_since: int = 0
    since: int = 0  # set at an alarm: the period the signalling side last stood at 0

    def update(self, z: float) -> str | None:
        self.periods += 1
        if not math.isfinite(z):
            return None
        self.upper = max(0.0, self.upper + z - self.k)
        self.lower = max(0.0, self.lower - z - self.k)
        if self.upper == 0.0:
            self.upper_since = self.periods
        if self.lower == 0.0:
            self.lower_since = self.periods
        side = "up" if self.upper > self.h else "down" if self.lower > self.h else None
        if side is not None:
            self.since = self.upper_since if side == "up" else self.lower_since
            self.upper = self.lower = 0.0
            self.upper_since = self.lower_since = self.periods
        return side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cusum:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
