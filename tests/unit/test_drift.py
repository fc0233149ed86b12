"""The drift watch's mechanics on made-up streams (its false-alarm rates and delays on
simulated months are the benchmark, benchmarks/drift.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevcf.watch.drift import DriftWatch, FilmRecord, Reference, WatchConfig, mix_tests

CFG = WatchConfig(burn_in=25, burn_in_films=1000, window=7)  # a 1,000-film burn-in


def _day(label: str, n: int = 40, positives: int = 15, refused: int = 1,
         model: str = "EdgeDR", score: float = 0.4) -> list[FilmRecord]:  # fmt: skip
    """A day with exactly ``positives`` positive decisions and ``refused`` refusals."""
    out = []
    for i in range(n):
        ok = i >= refused
        pos = ok and i - refused < positives
        out.append(FilmRecord(label, ok, pos if ok else None, (0.8 if pos else 0.1) + score - 0.4
                              if ok else None, 0.5 if ok else None,
                              {"sex": "M" if i % 2 else "F", "model": model}))  # fmt: skip
    return out


def _burnt() -> DriftWatch:
    w = DriftWatch(CFG)
    for d in range(25):
        assert w.add_period(f"b{d}", _day(f"b{d}")) == []
    return w


def test_the_burn_in_becomes_the_reference() -> None:
    w = DriftWatch(CFG)
    for d in range(24):
        w.add_period(f"b{d}", _day(f"b{d}"))
    assert not w.ready
    w.add_period("b24", _day("b24"))
    ref = w.reference
    assert ref is not None and "burn-in" in ref.source and ref.films == 1000
    assert ref.positive_rate == pytest.approx(15 / 39) and ref.refusal_rate == pytest.approx(1 / 40)
    assert ref.levels["model"] == {"EdgeDR": 1000} and ref.levels["sex"] == {"F": 500, "M": 500}
    assert ref.per_period == 40
    # h above the normal chart's 5: a reference of 1,000 films is itself uncertain
    assert all(5.5 < h < 9 for h in w.h.values()), w.h


def test_a_reference_of_many_films_keeps_aim_cus_h_and_a_rare_rate_needs_more() -> None:
    big = Reference.from_records(_day("r") * 1, "site validation", 40)
    big.films = big.assessable = big.gate_films = 10**9
    w = DriftWatch(CFG, big)
    assert w.h["mean_score"] == pytest.approx(5.0, abs=0.02)
    assert w.h["refusal_rate"] > w.h["positive_rate"] >= 4.9  # 1 in 40 refused: discrete


def test_a_stable_stream_raises_nothing_and_a_drop_in_positives_is_caught() -> None:
    w = _burnt()
    for d in range(20):
        assert w.add_period(f"d{d:02d}", _day(f"d{d:02d}")) == []
    alarms = []
    for d in range(20, 30):
        alarms += w.add_period(f"d{d:02d}", _day(f"d{d:02d}", positives=8))
    first = alarms[0]
    assert first.signal in ("positive_rate", "mean_score") and first.direction == "down"
    assert first.began == "d20" and int(first.raised[1:]) <= 23
    assert {"positive_rate", "mean_score"} <= {a.signal for a in alarms}
    assert first.evidence["reference"] == pytest.approx(15 / 39)


def test_refusals_rising_are_an_input_alarm() -> None:
    w = _burnt()
    alarms = w.add_period("d0", _day("d0", refused=12))
    assert [(a.signal, a.direction) for a in alarms] == [("refusal_rate", "up")]


def test_a_new_detector_is_a_metadata_alarm_at_the_window_end() -> None:
    w = _burnt()
    raised = []
    for d in range(7):
        raised += w.add_period(f"d{d}", _day(f"d{d}", model="EdgeDR" if d < 3 else "LuxDR"))
    assert [(a.signal, a.raised, a.began) for a in raised] == [("mix:model", "d6", "d0")]
    ev = raised[0].evidence
    assert ev["window"]["LuxDR"] == pytest.approx(4 / 7, abs=1e-4) and ev["reference"]["LuxDR"] == 0
    assert ev["q"] < CFG.alpha


def test_the_watch_survives_a_restart() -> None:
    """State to JSON and back (as the journal keeps it): the same alarms afterwards."""
    a = _burnt()
    for d in range(3):
        a.add_period(f"d{d}", _day(f"d{d}", positives=11))
    b = DriftWatch.from_dict(json.loads(json.dumps(a.to_dict())))
    assert b.h == a.h and b.charts == a.charts
    for d in range(3, 12):
        day = _day(f"d{d}", positives=11, model="LuxDR" if d > 5 else "EdgeDR")
        assert [x.to_dict() for x in a.add_period(f"d{d}", day)] == [
            x.to_dict() for x in b.add_period(f"d{d}", day)
        ]
    assert a.alarms and [x.to_dict() for x in a.alarms] == [x.to_dict() for x in b.alarms]


def test_feed_cuts_periods_by_day() -> None:
    w = DriftWatch(CFG)
    w.feed([r for d in range(25) for r in _day(f"b{d}")])
    assert w.ready and w.reference is not None and w.reference.films == 1000


def test_mix_tests_match_scipy_on_the_2_by_l_table() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = {"model": {"A": 300, "B": 120, "C": 30}}
    win = {"model": {"A": 90, "B": 70, "C": 15}}
    got = mix_tests(ref, win)["model"]
    table = np.array([[300, 120, 30], [90, 70, 15]])
    chi2, p, df, _ = scipy_stats.chi2_contingency(table, correction=False)
    assert got["statistic"] == pytest.approx(chi2) and got["df"] == df
    assert got["p"] == pytest.approx(p, rel=1e-6)
    assert mix_tests(ref, win)["sex"]["p"] is None  # one level ("unknown"): nothing to test
