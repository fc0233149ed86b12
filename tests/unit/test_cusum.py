"""The drift watch's CUSUM: run lengths against published tables and a simulation."""

from __future__ import annotations

import numpy as np
import pytest

from edgevcf import cusum

# Lucas & Crosier (1982), Table 1: two-sided CUSUM, k = 0.5, h = 4, no head start.
LUCAS_CROSIER_H4 = {0.0: 168.0, 0.25: 74.2, 0.5: 26.6, 0.75: 13.3, 1.0: 8.38, 1.5: 4.75,
                    2.0: 3.34, 3.0: 2.19, 4.0: 1.71}  # fmt: skip


def test_one_sided_arl_meets_brook_and_evans() -> None:
    """Brook & Evans (1972): one-sided, k = 0.5, h = 3: ARL 117.59 in control (Waldmann's
    exact 117.4)."""
    assert cusum.normal_arl(0.5, 3.0, sided="one") == pytest.approx(117.59, rel=2e-3)


@pytest.mark.parametrize("mu", sorted(LUCAS_CROSIER_H4))
def test_two_sided_arl_meets_lucas_and_crosier(mu: float) -> None:
    assert cusum.normal_arl(0.5, 4.0, mu) == pytest.approx(LUCAS_CROSIER_H4[mu], rel=0.01)


def test_the_design_run_length_is_aim_cus() -> None:
    """k = 0.5, h = 5 (AIM-CU's defaults): about 465 periods between false alarms (Hawkins &
    Olwell's table gives 465 two-sided, 930 one-sided)."""
    assert cusum.design_arl() == pytest.approx(465, rel=0.01)
    assert cusum.normal_arl(0.5, 5.0, sided="one") == pytest.approx(930, rel=0.01)


def _simulated_arl(n: int, p0: float, p: float, h: float, runs: int, seed: int) -> float:
    """Mean run length of the two-sided standardised-count CUSUM, by simulation."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt(n * p0 * (1 - p0))
    up = np.zeros(runs)
    down = np.zeros(runs)
    length = np.zeros(runs)
    alive = np.ones(runs, dtype=bool)
    t = 0
    while alive.any() and t < 100_000:
        t += 1
        z = (rng.binomial(n, p, size=runs) - n * p0) / sd
        up = np.where(alive, np.maximum(0, up + z - 0.5), up)
        down = np.where(alive, np.maximum(0, down - z - 0.5), down)
        hit = alive & ((up > h) | (down > h))
        length[hit] = t
        alive &= ~hit
    return float(length.mean())


@pytest.mark.parametrize(("p0", "p", "h"), [(0.05, 0.05, 4.0), (0.38, 0.38, 3.0),
                                            (0.38, 0.26, 5.0)])  # fmt: skip
def test_binomial_arl_matches_a_simulation(p0: float, p: float, h: float) -> None:
    """The Markov chain on a discrete statistic (standardised binomial counts, 40 a period) against
    a 4,000-run simulation of the same chart (standard error ~1.6 % in control)."""
    exact = cusum.binomial_arl(40, p0, 0.5, h, p=p)
    sim = _simulated_arl(40, p0, p, h, runs=4000, seed=1)
    assert exact == pytest.approx(sim, rel=0.06)


def test_calibrated_h_reaches_the_design_run_length_and_no_less() -> None:
    """A rare rate (1 % of 40 films) at h = 5 alarms about twice as often as the design; the
    calibrated h is the smallest (to 0.01) that reaches it. A common rate keeps h = 5."""
    target = cusum.design_arl()
    assert cusum.binomial_arl(40, 0.01, 0.5, 5.0) < 0.6 * target
    h = cusum.calibrate_h(lambda v: cusum.binomial_arl(40, 0.01, 0.5, v), target)
    assert cusum.binomial_arl(40, 0.01, 0.5, h) >= target
    assert cusum.binomial_arl(40, 0.01, 0.5, h - 0.02) < target
    assert cusum.calibrate_h(lambda v: cusum.normal_arl(0.5, v), target) == pytest.approx(
        5.0, abs=0.01
    )


def test_the_chart_signals_once_names_the_side_and_where_it_began() -> None:
    chart = cusum.Cusum(h=2.0)
    assert [chart.update(z) for z in (0.1, -0.3, 0.0)] == [None, None, None]
    sides = [chart.update(z) for z in (1.5, 1.5, 1.5)]  # +1 per period above k
    assert sides == [None, None, "up"] and chart.since == 3
    assert chart.upper == chart.lower == 0.0  # restarted after the alarm
    assert [chart.update(z) for z in (-2.0, -2.0)] == [None, "down"]
    again = cusum.Cusum.from_dict(chart.to_dict())
    assert again == chart
    assert chart.update(float("nan")) is None and chart.periods == 9
