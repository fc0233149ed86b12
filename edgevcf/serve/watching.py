"""The node's side of the drift watch: a record per scored film, periods judged as they end.

:mod:`edgevcf.watch.drift` does the statistics; this keeps what it needs durable and visible.
Each film's record (gate verdict and distance, P(fresh), decision, header bands — no identifier)
goes to the journal as the film's result is written; when a film of a new period arrives, the
open period is judged, and its records are dropped and the watch's new state kept in one
transaction, so a restart neither loses nor counts twice a period. Alarms go to the log (and
the JSON-lines result log, as ``{"event": "drift_alarm", ...}``), to ``/metrics`` (a counter,
and gauges that stay 1 for a window of periods after an alarm) and to the status page.

The reference: the site validation the bundle carries (``site_calibration.drift_reference``:
its confirmation films, as the site bundle scores them), else a burn-in of this cart's first
periods. A bundle change starts the watch afresh.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from typing import Any

from edgevcf.serve.config import Watch
from edgevcf.serve.journal import Journal
from edgevcf.watch.drift import SIGNALS, Alarm, DriftWatch, FilmRecord, Reference, WatchConfig

log = logging.getLogger(__name__)


def bundle_reference(manifest: dict[str, Any], per_period: float) -> Reference | None:
    """The site validation's drift reference the bundle carries, tuned for ``per_period``."""
    ref = (manifest.get("site_calibration") or {}).get("drift_reference")
    if not ref:
        return None
    out = Reference.from_dict(ref)
    out.per_period = per_period
    return out


class NodeWatch:
    """The drift watch of one node (thread-safe)."""

    def __init__(self, journal: Journal, cfg: Watch, model_id: str,
                 manifest: dict[str, Any]) -> None:  # fmt: skip
        self.journal = journal
        self.cfg = cfg
        self.model_id = model_id
        self._lock = threading.Lock()
        wcfg = WatchConfig(burn_in=cfg.burn_in, burn_in_films=cfg.burn_in_films,
                           window=cfg.window, alpha=cfg.alpha)  # fmt: skip
        state = journal.watch_state()
        if state and state.get("model_id") == model_id:
            self.watch = DriftWatch.from_dict(state["watch"])
        else:
            if state:
                log.info("drift watch: the bundle changed (%s -> %s); watching afresh",
                         state.get("model_id"), model_id)  # fmt: skip
            self.watch = DriftWatch(wcfg, bundle_reference(manifest, cfg.films_per_period))
        self.block = int(state.get("block", 0)) if state and self.watch.periods else 0
        self._open: list[tuple[str, dict[str, Any]]] = journal.watch_open()

    # ------------------------------------------------------------------ periods
    def _period(self, received_at: float) -> str:
        if self.cfg.period == "day":
            return dt.datetime.fromtimestamp(received_at).date().isoformat()
        n = int(self.cfg.period[6:])
        if len(self._open) >= n:
            self.block += 1
        return f"block-{self.block:06d}"

    def add(
        self, result: dict[str, Any], levels: dict[str, str], received_at: float
    ) -> list[Alarm]:
        """One written result; returns the alarms of a period it closed."""
        ok = result.get("status") == "ok" and result.get("probability") is not None
        gate = result.get("gate_score")
        with self._lock:
            period = self._period(received_at)
            record = FilmRecord(
                period, ok, bool(result.get("decision")) if ok else None,
                float(result["probability"]) if ok else None,
                float(gate) if gate is not None and math.isfinite(float(gate)) else None,
                dict(levels),
            )  # fmt: skip
            alarms: list[Alarm] = []
            if self._open and self._open[-1][0] != period:
                alarms = self._close()
            self.journal.watch_add(period, record.to_dict())
            self._open.append((period, record.to_dict()))
            return alarms

    def _close(self) -> list[Alarm]:
        periods: list[str] = []
        alarms: list[Alarm] = []
        for label in dict.fromkeys(p for p, _ in self._open):
            recs = [FilmRecord.from_dict(r) for p, r in self._open if p == label]
            alarms += self.watch.add_period(label, recs)
            periods.append(label)
        self.journal.watch_close(periods, self.state())
        self._open = []
        return alarms

    def state(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "block": self.block, "watch": self.watch.to_dict()}

    # ------------------------------------------------------------------ views
    def active(self) -> dict[str, Alarm]:
        """Alarms raised within the last ``window`` periods, the latest per signal."""
        recent = set(self.watch.periods[-self.cfg.window :])
        return {a.signal: a for a in self.watch.alarms if a.raised in recent}

    def gauges(self) -> dict[str, float]:
        """What ``/metrics`` shows (labels are signal names, never an identifier)."""
        with self._lock:
            w = self.watch
            out: dict[str, float] = {
                "watch_ready": float(w.ready),
                "watch_periods": float(len(w.periods)),
                "watch_burn_in_periods": float(len(w.burn_periods)),
                "watch_open_films": float(len(self._open)),
            }
            active = self.active()
            last = w.history[-1] if w.history else {}
            for s in SIGNALS:
                lab = f'{{signal="{s}"}}'
                if s in w.charts:
                    c = w.charts[s]
                    out[f'watch_cusum{{signal="{s}",side="upper"}}'] = c.upper
                    out[f'watch_cusum{{signal="{s}",side="lower"}}'] = c.lower
                    out[f"watch_h{lab}"] = c.h
                ref = w.reference
                if ref is not None:
                    out[f"watch_reference{lab}"] = ref.value(s)
                if isinstance(last.get(s), int | float):
                    out[f"watch_value{lab}"] = float(last[s])
                out[f"watch_alarm_active{lab}"] = float(s in active)
            for name in {a.signal for a in w.alarms if a.signal.startswith("mix:")}:
                out[f'watch_alarm_active{{signal="{name}"}}'] = float(name in active)
            return {k: v for k, v in out.items() if math.isfinite(v)}

    def status(self) -> dict[str, Any]:
        """What the status page shows: the reference, each signal's last value and chart, the
        alarms of the last window, and the per-period history for the small charts."""
        with self._lock:
            w = self.watch
            ref = w.reference
            return {
                "ready": w.ready,
                "reference": ref.source
                if ref
                else f"burn-in: {len(w.burn_periods)} of {w.cfg.burn_in} periods, {len(w.burn)} of "
                f"{w.cfg.burn_in_films} films",
                "period": self.cfg.period,
                "signals": {
                    s: {
                        "reference": ref.value(s) if ref else None,
                        "h": w.charts[s].h if s in w.charts else None,
                        "upper": w.charts[s].upper if s in w.charts else None,
                        "lower": w.charts[s].lower if s in w.charts else None,
                        "history": [h.get(s) for h in w.history[-60:]],
                    }
                    for s in SIGNALS
                },
                "active": [a.to_dict() for a in self.active().values()],
                "alarms": [a.to_dict() for a in w.alarms[-20:]],
                "open_films": len(self._open),
            }
