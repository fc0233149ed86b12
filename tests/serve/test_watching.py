"""The node's drift watch over a real journal: records kept per period, periods judged as
they end, alarms to metrics and status, state across a restart (no DICOM needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgevcf.serve.config import Watch
from edgevcf.serve.journal import Journal
from edgevcf.serve.watching import NodeWatch, bundle_reference
from edgevcf.watch.drift import FilmRecord, Reference

CFG = Watch(period="films:40", burn_in=25, burn_in_films=1000, window=7)


def _results(
    n: int, positives: int, refused: int = 1
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    out = []
    for i in range(n):
        if i < refused:
            out.append(({"status": "not_assessable", "probability": None, "decision": None,
                         "gate_score": 3.0}, {"sex": "F"}))  # fmt: skip
            continue
        pos = i - refused < positives
        out.append(({"status": "ok", "probability": 0.8 if pos else 0.1, "decision": pos,
                     "gate_score": -1.0}, {"sex": "M" if i % 2 else "F"}))  # fmt: skip
    return out


def _feed(w: NodeWatch, blocks: int, positives: int = 15) -> list[Any]:
    alarms = []
    for _ in range(blocks):
        for result, levels in _results(40, positives):
            alarms += w.add(result, levels, 0.0)
    return alarms


def test_periods_close_reference_forms_and_a_drop_raises_an_alarm(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        w = NodeWatch(j, CFG, "model-a", {})
        assert _feed(w, 26) == []  # 25 blocks of burn-in judged when the 26th began
        assert w.watch.ready and w.watch.reference is not None
        assert w.watch.reference.films == 1000 and "burn-in" in w.watch.reference.source
        assert w.gauges()["watch_ready"] == 1.0 and w.gauges()["watch_open_films"] == 40
        alarms = _feed(w, 8, positives=6)
        assert alarms and alarms[0].signal in ("positive_rate", "mean_score")
        g = w.gauges()
        assert g[f'watch_alarm_active{{signal="{alarms[0].signal}"}}'] == 1.0
        assert g['watch_h{signal="positive_rate"}'] > 5
        st = w.status()
        assert st["active"] and st["signals"]["positive_rate"]["history"][-1] < 0.3
        json.dumps(st)  # the status page's JSON


def test_a_restart_resumes_the_open_period_and_the_state(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        a = NodeWatch(j, CFG, "model-a", {})
        _feed(a, 27)
        for result, levels in _results(40, 15)[:25]:  # a period left open
            a.add(result, levels, 0.0)
    with Journal(tmp_path / "j.sqlite") as j:
        b = NodeWatch(j, CFG, "model-a", {})
        assert len(b._open) == 25 and b.watch.ready
        assert b.watch.periods == a.watch.periods and b.watch.charts == a.watch.charts
        c = NodeWatch(j, CFG, "model-b", {})  # another bundle: watched afresh
        assert not c.watch.ready


def test_a_site_bundle_brings_its_reference(tmp_path: Path) -> None:
    recs = [FilmRecord("", True, i % 3 == 0, 0.7 if i % 3 == 0 else 0.2, -1.0, {"sex": "F"})
            for i in range(600)]  # fmt: skip
    ref = Reference.from_records(recs, "site validation: the 600 confirmation films", 0.0)
    manifest = {"site_calibration": {"drift_reference": ref.to_dict()}}
    got = bundle_reference(manifest, 40.0)
    assert got is not None and got.per_period == 40.0 and got.films == 600
    with Journal(tmp_path / "j.sqlite") as j:
        w = NodeWatch(j, CFG, "site-model", manifest)
        assert w.watch.ready and "site validation" in w.status()["reference"]
    assert bundle_reference({}, 40.0) is None
