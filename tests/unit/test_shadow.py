"""Shadow comparison statistics against reference implementations (scikit-learn's kappa,
statsmodels' exact McNemar, biostatUZH's paired Newcombe interval)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevcf.metrics import mcnemar
from edgevcf.watch.shadow import ShadowTally


def _tally(primary: np.ndarray, candidate: np.ndarray) -> ShadowTally:
    t = ShadowTally()
    for p, c in zip(primary, candidate, strict=True):
        t.add(bool(p), bool(c))
    return t


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 9), (12, 30), (150, 180), (7, 7), (0, 40)])
def test_exact_mcnemar_matches_statsmodels(b: int, c: int) -> None:
    tables = pytest.importorskip("statsmodels.stats.contingency_tables")
    ref = tables.mcnemar(np.array([[20, b], [c, 40]]), exact=True).pvalue
    assert mcnemar(b, c, exact=True) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_kappa_and_agreement_match_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    primary = rng.random(500) < 0.4
    candidate = np.where(rng.random(500) < 0.9, primary, ~primary)
    r = _tally(primary, candidate).compare()
    assert r["films"] == 500
    assert r["kappa"]["value"] == pytest.approx(sk.cohen_kappa_score(primary, candidate))
    assert r["agreement"]["value"] == pytest.approx(float(np.mean(primary == candidate)))
    assert r["kappa"]["ci_low"] < r["kappa"]["value"] < r["kappa"]["ci_high"]
    rates = r["positive_rate"]
    assert rates["primary"] == pytest.approx(primary.mean())
    assert r["difference"]["value"] == pytest.approx(candidate.mean() - primary.mean())


def _uzh_paired_ci(r: int, s: int, t: int, u: int) -> tuple[float, float, float]:
    """biostatUZH's ``confIntPairedProportion`` (R; Newcombe 1998, Altman 2000 p. 52),
    transcribed: the difference p1 - p2 of the paired table [[r, s], [t, u]] and its CI."""
    z = 1.959963984540054
    n = r + s + t + u

    def wilson(x: int) -> tuple[float, float]:
        p = x / n
        d = 1 + z * z / n
        c = (p + z * z / (2 * n)) / d
        h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
        return c - h, c + h

    p1, p2 = (r + s) / n, (r + t) / n
    (l1, u1), (l2, u2) = wilson(r + s), wilson(r + t)
    a, b = (r + s) * (t + u) * (r + t) * (s + u), r * u - s * t
    c = b - n / 2 if b > n / 2 else (b if b < 0 else 0)
    phi = c / math.sqrt(a) if a > 0 else 0.0
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = d + math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return d, lo, hi


@pytest.mark.parametrize("cells", [(36, 2, 12, 0), (20, 5, 9, 40), (100, 3, 15, 300)])
def test_the_paired_difference_is_newcombes_method_10(cells: tuple[int, int, int, int]) -> None:
    """Candidate minus primary positive rate with Newcombe's paired interval, against an
    independent transcription of biostatUZH's R function (candidate = group 1)."""
    both, primary_only, candidate_only, neither = cells
    d = ShadowTally(both, primary_only, candidate_only, neither).compare()["difference"]
    ref = _uzh_paired_ci(both, candidate_only, primary_only, neither)
    assert (d["value"], d["ci_low"], d["ci_high"]) == pytest.approx(ref, abs=1e-12)


def test_unassessed_films_are_counted_apart_and_state_round_trips() -> None:
    t = ShadowTally()
    t.add(True, None)
    t.add(None, False)
    t.add(False, False)
    assert t.n == 1 and t.unpaired == 2
    assert ShadowTally.from_dict(t.to_dict()) == t
    r = t.compare()
    assert r["kappa"]["value"] is None and r["mcnemar_p"] == 1.0  # one decision only: undefined
    assert ShadowTally().compare()["agreement"] is None
