"""The drift watch: is the bundle on this cart still seeing what it was validated on?

Label-free, from what the node knows of every film the moment it answers (:class:`FilmRecord`:
the gate's verdict and distance, P(fresh), the decision, the subgroup bands of the header; never
an identifier), period by period (a day, or a block of N films), against a :class:`Reference`:
the site validation's confirmation films where the bundle carries them, else a burn-in of the
site's own first days — never the export's tuning split, which would alarm at once at any new
site.

Signals, each with its statistic and test:

* output — ``positive_rate`` (decisions among assessable films, a binomial count) and
  ``mean_score`` (mean P(fresh), a normal mean): two-sided CUSUM of the standardised period value
  (:mod:`edgevcf.cusum`; AIM-CU's ``k = 0.5``);
* input — ``refusal_rate`` (the quality gate's refusals among all films) and ``gate_distance``
  (the gate's mean out-of-scope score of the films it accepted): the same CUSUM;
* metadata mix — every subgroup field of :mod:`edgevcf.subgroups`: its levels in consecutive
  windows of ``window`` periods (14 days) against the reference, Pearson's chi-square test of
  homogeneity of the 2 x L table (both samples count: the reference is a sample too),
  Benjamini-Hochberg across the fields, an alarm where ``q < alpha``.

Each CUSUM's ``h`` gives the in-control run length of AIM-CU's chart on normal data (``h = 5``,
about 465 periods), computed for the statistic's own distribution *and* for a reference that is
itself a sample: the false-alarm rate is averaged over where the true in-control value may lie
given the reference's films (Jones, Champ & Rigdon 2004 show how much an estimated reference
shortens the run length). A CUSUM restarts after each alarm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgevcf import cusum, stats, subgroups

RATE_SIGNALS = ("positive_rate", "refusal_rate")
MEAN_SIGNALS = ("mean_score", "gate_distance")
SIGNALS = (*RATE_SIGNALS, *MEAN_SIGNALS)
#: Periods of per-period values kept with the state (the status page's charts).
HISTORY = 400
#: Gauss-Hermite nodes for averaging the run length over the reference's sampling error.
_GH = np.polynomial.hermite_e.hermegauss(9)


@dataclass(frozen=True)
class FilmRecord:
    """What the watch keeps of one film (no identifier).

    Attributes:
        day: The day it was received (ISO date, the cart's local calendar).
        assessable: The quality gate accepted it.
        positive: The decision (None where not assessable).
        probability: P(fresh) (None where not assessable).
        gate: The gate's out-of-scope score (None where the gate did not run).
        levels: Its subgroup levels (:mod:`edgevcf.subgroups` names and bands).
    """

    day: str
    assessable: bool
    positive: bool | None = None
    probability: float | None = None
    gate: float | None = None
    levels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FilmRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size < 2:
        return (float(v.mean()) if v.size else math.nan), math.nan
    return float(v.mean()), float(v.std(ddof=1))


@dataclass
class Reference:
    """What in-control looks like at this site, and how many films say so.

    ``per_period`` is the number of films a period usually holds (the run lengths are computed
    for it); ``source`` says where the figures come from."""

    source: str
    films: int
    assessable: int
    positive_rate: float
    refusal_rate: float
    score_mean: float
    score_sd: float
    gate_mean: float
    gate_sd: float
    gate_films: int
    levels: dict[str, dict[str, int]]
    per_period: float

    @classmethod
    def from_records(
        cls, records: Sequence[FilmRecord], source: str, per_period: float
    ) -> Reference:
        ok = [r for r in records if r.assessable]
        pos = [r for r in ok if r.positive is not None]
        gates = [r.gate for r in ok if r.gate is not None and math.isfinite(r.gate)]
        score_mean, score_sd = _mean_sd([r.probability for r in ok if r.probability is not None])
        gate_mean, gate_sd = _mean_sd(gates)
        levels: dict[str, dict[str, int]] = {}
        _count_levels(records, levels)
        return cls(
            source=source,
            films=len(records),
            assessable=len(ok),
            positive_rate=sum(bool(r.positive) for r in pos) / len(pos) if pos else math.nan,
            refusal_rate=1.0 - len(ok) / len(records) if records else math.nan,
            score_mean=score_mean,
            score_sd=score_sd,
            gate_mean=gate_mean,
            gate_sd=gate_sd,
            gate_films=len(gates),
            levels=levels,
            per_period=float(per_period),
        )

    @property
    def refusal_p0(self) -> float:
        """The refusal rate the chart is centred on (half a film when none was refused: a
        rate of 0 has no spread to standardise by)."""
        return self.refusal_rate if self.refusal_rate > 0 else 0.5 / max(self.films, 1)

    def value(self, signal: str) -> float:
        """The in-control value of ``signal``."""
        return {
            "positive_rate": self.positive_rate,
            "refusal_rate": self.refusal_rate,
            "mean_score": self.score_mean,
            "gate_distance": self.gate_mean,
        }[signal]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reference:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class WatchConfig:
    """How the watch judges (defaults: AIM-CU's CUSUM, CheXstray's 14-day windows).

    Attributes:
        k: CUSUM reference value, in standard deviations of the period statistic.
        h_normal: The decision interval whose run length on normal data is the design.
        window: Periods per metadata window.
        alpha: Benjamini-Hochberg level for the metadata mix (per window: at 26 windows a year,
            at most ``26 * alpha`` false alarms a year when nothing changed).
        burn_in: Periods of the site's own stream that become the reference when the bundle
            carries none...
        burn_in_films: ...and at least this many films.
    """

    k: float = cusum.K_DEFAULT
    h_normal: float = cusum.H_DEFAULT
    window: int = 14
    alpha: float = 0.01
    burn_in: int = 28
    burn_in_films: int = 1000


@dataclass
class Alarm:
    """One signal out of control: which, which way, from when, and the evidence."""

    signal: str
    direction: str  # "up" / "down" (CUSUM), "changed" (metadata mix)
    raised: str  # the period that raised it
    began: str  # the period the change most likely began
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate_h(n: float, p0: float, n_ref: int, k: float, target: float) -> float:
    """``h`` for a binomial rate of ``n`` films a period, whose in-control value ``p0`` was
    estimated from ``n_ref`` films: the false-alarm rate averaged over where the true rate may
    lie, its Jeffreys posterior Beta(x + 1/2, n_ref - x + 1/2) (skewed for a rare rate such as
    1 % refusals, where a normal spread would understate how far above ``p0`` it may be), at
    the midpoints of 20 equal-probability bins (drawn with a fixed seed: the same h each time)."""
    n_i = max(2, round(n))
    if not 0 < p0 < 1:
        return math.inf
    x = p0 * n_ref
    draws = np.sort(np.random.default_rng(0).beta(x + 0.5, n_ref - x + 0.5, 12_000))
    ps = np.clip(draws[300::600], 1e-6, 1 - 1e-6)

    def arl(h: float) -> float:
        rate = np.mean(
            [1.0 / cusum.binomial_arl(n_i, p0, k, h, float(pi), cusum.CALIBRATION_STATES)
             for pi in ps]
        )  # fmt: skip
        return float(1.0 / rate)

    return cusum.calibrate_h(arl, target, lo=1.0, hi=20.0)


def _mean_h(n: float, n_ref: int, k: float, target: float) -> float:
    """``h`` for a mean of ``n`` values a period whose in-control mean was estimated from
    ``n_ref``: the standardised offset is N(0, n / n_ref)."""
    shift = _GH[0] * math.sqrt(max(n, 1.0) / max(n_ref, 1))
    w = _GH[1] / _GH[1].sum()

    def arl(h: float) -> float:
        return 1.0 / sum(
            wi / cusum.normal_arl(k, h, float(s), states=cusum.CALIBRATION_STATES)
            for s, wi in zip(shift, w, strict=True)
        )

    return cusum.calibrate_h(arl, target, lo=1.0, hi=20.0)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [x for x in values if x is not None and math.isfinite(x)]


def _count_levels(records: Sequence[FilmRecord], into: dict[str, dict[str, int]]) -> None:
    """Add each record's level of every subgroup field to ``into`` (field -> level -> films)."""
    for r in records:
        for name in subgroups.NAMES:
            lvl = r.levels.get(name, subgroups.UNKNOWN)
            into.setdefault(name, {})[lvl] = into.get(name, {}).get(lvl, 0) + 1


def _z_rate(x: int, n: int, p0: float) -> float:
    if n == 0 or not 0 < p0 < 1:
        return math.nan
    return (x - n * p0) / math.sqrt(n * p0 * (1 - p0))


def _z_mean(v: list[float], mu: float, sd: float) -> float:
    if not v or not sd > 0:
        return math.nan
    return (float(np.mean(v)) - mu) / (sd / math.sqrt(len(v)))


class DriftWatch:
    """The watch over one bundle's stream (state in :meth:`to_dict` / :meth:`from_dict`, kept
    in the journal so it survives a restart)."""

    def __init__(
        self,
        cfg: WatchConfig | None = None,
        reference: Reference | None = None,
        h: dict[str, float] | None = None,
    ) -> None:
        self.cfg = cfg or WatchConfig()
        self.reference: Reference | None = None
        self.charts: dict[str, cusum.Cusum] = {}
        self.h: dict[str, float] = {}
        self.periods: list[str] = []  # labels of the periods watched (after the reference)
        self.burn: list[FilmRecord] = []
        self.burn_periods: list[str] = []
        self.window: dict[str, dict[str, int]] = {}
        self.window_start = ""
        self.window_periods = 0
        self.history: list[dict[str, Any]] = []  # per period: each signal's value and sums
        self.alarms: list[Alarm] = []
        if reference is not None:
            self._start(reference, h)

    # ------------------------------------------------------------------ reference
    def _start(self, reference: Reference, h: dict[str, float] | None = None) -> None:
        self.reference = ref = reference
        self.h = h or self._calibrate(ref)
        self.charts = {s: cusum.Cusum(k=self.cfg.k, h=self.h[s]) for s in SIGNALS}

    def _calibrate(self, ref: Reference) -> dict[str, float]:
        """Each chart's ``h`` for this reference (a few seconds: Markov chains, bisection)."""
        target = cusum.design_arl(self.cfg.k, self.cfg.h_normal)
        n = ref.per_period
        return {
            "positive_rate": _rate_h(
                n * (1 - ref.refusal_rate), ref.positive_rate, ref.assessable, self.cfg.k, target
            ),
            "refusal_rate": _rate_h(n, ref.refusal_p0, ref.films, self.cfg.k, target),
            "mean_score": _mean_h(n * (1 - ref.refusal_rate), ref.assessable, self.cfg.k, target),
            "gate_distance": _mean_h(n * (1 - ref.refusal_rate), ref.gate_films, self.cfg.k,
                                     target),
        }  # fmt: skip

    @property
    def ready(self) -> bool:
        """Whether a reference is in place (else the watch is in its burn-in)."""
        return self.reference is not None

    # ------------------------------------------------------------------ periods
    def add_period(self, label: str, records: Sequence[FilmRecord]) -> list[Alarm]:
        """Judge one period's films (a day, or a block of N); returns the alarms it raised."""
        if not records:
            return []
        if self.reference is None:
            self.burn.extend(records)
            self.burn_periods.append(label)
            if (
                len(self.burn_periods) >= self.cfg.burn_in
                and len(self.burn) >= self.cfg.burn_in_films
            ):
                per = len(self.burn) / len(self.burn_periods)
                self._start(Reference.from_records(
                    self.burn,
                    f"burn-in: the site's first {len(self.burn_periods)} periods "
                    f"({self.burn_periods[0]} to {self.burn_periods[-1]}, {len(self.burn)} films)",
                    per,
                ))  # fmt: skip
                self.burn = []
            return []
        ref = self.reference
        ok = [r for r in records if r.assessable]
        pos = [r for r in ok if r.positive is not None]
        probs = _finite([r.probability for r in ok])
        gates = _finite([r.gate for r in ok])
        x = {
            "positive_rate": _z_rate(sum(bool(r.positive) for r in pos), len(pos),
                                     ref.positive_rate),
            "refusal_rate": _z_rate(len(records) - len(ok), len(records), ref.refusal_p0),
            "mean_score": _z_mean(probs, ref.score_mean, ref.score_sd),
            "gate_distance": _z_mean(gates, ref.gate_mean, ref.gate_sd),
        }  # fmt: skip
        self.periods.append(label)
        raised: list[Alarm] = []
        values = {
            "films": len(records),
            "positive_rate": len([r for r in pos if r.positive]) / len(pos) if pos else None,
            "refusal_rate": 1 - len(ok) / len(records),
            "mean_score": float(np.mean(probs)) if probs else None,
            "gate_distance": float(np.mean(gates)) if gates else None,
        }
        for s in SIGNALS:
            chart = self.charts[s]
            side = chart.update(x[s])
            if side is not None:
                began = self.periods[min(chart.since, len(self.periods) - 1)]
                raised.append(Alarm(s, side, label, began, {
                    "z": x[s], "h": chart.h, "k": chart.k,
                    "reference": ref.value(s), "this_period": values.get(s),
                }))  # fmt: skip
        raised += self._mix(label, records)
        sums = {s: (c.upper, c.lower) for s, c in self.charts.items()}
        self.history.append({"period": label, **values, "z": x, "sums": sums})
        self.alarms += raised
        return raised

    def _mix(self, label: str, records: Sequence[FilmRecord]) -> list[Alarm]:
        """Add the period to the metadata window; at its end, test every field."""
        if not self.window_periods:
            self.window_start = label
        self.window_periods += 1
        _count_levels(records, self.window)
        if self.window_periods < self.cfg.window:
            return []
        tests = mix_tests(self.reference.levels if self.reference else {}, self.window)
        self.window, self.window_periods = {}, 0
        out = []
        for name, t in tests.items():
            if t["q"] is not None and t["q"] < self.cfg.alpha:
                out.append(Alarm(f"mix:{name}", "changed", label, self.window_start, t))
        return out

    def feed(self, records: Iterable[FilmRecord]) -> list[Alarm]:
        """Records in arrival order, one period per day (their ``day``)."""
        out: list[Alarm] = []
        day: str | None = None
        batch: list[FilmRecord] = []
        for r in records:
            if day is not None and r.day != day:
                out += self.add_period(day, batch)
                batch = []
            day = r.day
            batch.append(r)
        if batch and day is not None:
            out += self.add_period(day, batch)
        return out

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        return {
            "cfg": asdict(self.cfg),
            "reference": self.reference.to_dict() if self.reference else None,
            "h": self.h,
            "charts": {s: c.to_dict() for s, c in self.charts.items()},
            "periods": self.periods,
            "burn": [r.to_dict() for r in self.burn],
            "burn_periods": self.burn_periods,
            "window": self.window,
            "window_start": self.window_start,
            "window_periods": self.window_periods,
            "alarms": [a.to_dict() for a in self.alarms],
            "history": self.history[-HISTORY:],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftWatch:
        ref = Reference.from_dict(d["reference"]) if d.get("reference") else None
        w = cls(WatchConfig(**d["cfg"]), ref, d.get("h") or None)
        w.charts.update({s: cusum.Cusum.from_dict(c) for s, c in d.get("charts", {}).items()})
        w.periods = list(d.get("periods", []))
        w.burn = [FilmRecord.from_dict(r) for r in d.get("burn", [])]
        w.burn_periods = list(d.get("burn_periods", []))
        w.window = {k: dict(v) for k, v in d.get("window", {}).items()}
        w.window_start = d.get("window_start", "")
        w.window_periods = int(d.get("window_periods", 0))
        w.alarms = [Alarm(**a) for a in d.get("alarms", [])]
        w.history = list(d.get("history", []))
        return w


def mix_tests(
    reference: dict[str, dict[str, int]], window: dict[str, dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """Per subgroup field: reference vs window level counts, Pearson's chi-square test of
    homogeneity (:func:`edgevcf.stats.homogeneity_test` on the 2 x L table), Benjamini-Hochberg
    q-values across the fields that could be tested."""
    out: dict[str, dict[str, Any]] = {}
    for name in subgroups.NAMES:
        ref, win = reference.get(name, {}), window.get(name, {})
        levels = sorted(set(ref) | set(win))
        res = stats.homogeneity_test(
            {lvl: (win.get(lvl, 0), win.get(lvl, 0) + ref.get(lvl, 0)) for lvl in levels}
        )
        n_ref, n_win = sum(ref.values()), sum(win.values())
        out[name] = {
            "statistic": res.statistic,
            "df": res.df,
            "p": res.p_value if math.isfinite(res.p_value) else None,
            "note": res.note,
            "reference": {lvl: round(ref.get(lvl, 0) / n_ref, 4) if n_ref else None
                          for lvl in levels},
            "window": {lvl: round(win.get(lvl, 0) / n_win, 4) if n_win else None
                       for lvl in levels},
        }  # fmt: skip
    names = [n for n in out if out[n]["p"] is not None]
    qs = stats.benjamini_hochberg([out[n]["p"] for n in names])
    for name in out:
        out[name]["q"] = qs[names.index(name)] if name in names else None
    return out
