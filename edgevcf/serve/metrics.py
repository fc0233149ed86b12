"""The node's counters and latency histograms, in Prometheus' text format (no client library).

Labels carry kinds (a status, a reason class, a destination's AE title), never an identifier
of a patient, study or film.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import ClassVar

#: Upper bounds (seconds) of the latency histograms: a film is scored in tens of milliseconds,
#: a result forwarded in well under a second, a PACS outage is minutes.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus expects them."""

    def __init__(self, buckets: Iterable[float] = BUCKETS) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    """Counters (by name and one optional label) and histograms, safe to update from any thread."""

    PREFIX = "edgevcf_serve_"
    HELP: ClassVar[dict[str, str]] = {
        "received_total": "Films accepted (stored and journaled before success was answered).",
        "duplicates_total": "Films received again with a SOP Instance UID already journaled.",
        "refused_total": "C-STORE requests answered with a failure status, by reason.",
        "associations_rejected_total": "Associations rejected, by reason.",
        "scored_total": "Films scored, by outcome (ok, not_assessable, refused, error).",
        "results_written_total": "Structured Reports written to the outbox.",
        "forwarded_total": "Results delivered to a destination, by destination AE title.",
        "forward_failures_total": "Failed delivery attempts, by destination AE title.",
        "worker_restarts_total": "Scoring workers killed and replaced, by reason (timeout, died).",
        "worker_start_failures_total": "Scoring workers that could not load the bundle.",
        "quarantined_total": "Films quarantined after their tries ran out (undetermined SR).",
        "watch_alarms_total": "Drift alarms raised, by signal (docs/serve.md, over time).",
        "shadow_scored_total": "Films the shadow candidate scored, by outcome.",
        "shadow_score_seconds": "Time the shadow candidate took per film (after the primary).",
        "shadow_qa_sent_total": "Candidate SRs (NOT FOR CLINICAL USE) delivered to the QA node.",
        "shadow_qa_failures_total": "Candidate SRs the QA node did not get, by reason.",
        "score_seconds": "Time from reading a stored film to its decision.",
        "result_seconds": "Time from a film's receipt to its result at every destination.",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, str], int] = {}
        self._hist: dict[str, Histogram] = {}
        self._gauges: list[Callable[[], dict[str, float]]] = []

    def inc(self, name: str, label: str = "", value: str = "", by: int = 1) -> None:
        """Add ``by`` to counter ``name`` (with ``label="value"`` when given)."""
        with self._lock:
            key = (name, label, value)
            self._counters[key] = self._counters.get(key, 0) + by

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self._hist.setdefault(name, Histogram()).observe(seconds)

    def count(self, name: str) -> int:
        """Counter ``name`` summed over its labels."""
        with self._lock:
            return sum(v for (n, _, _), v in self._counters.items() if n == name)

    def gauges(self, source: Callable[[], dict[str, float]]) -> None:
        """Add a source of gauges (read when /metrics is asked: queue depths and the like)."""
        self._gauges.append(source)

    def text(self) -> str:
        """The Prometheus exposition (text format 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            names = sorted({n for n, _, _ in self._counters} | set(self.HELP) - set(self._hist))
            for name in names:
                if name.endswith("_seconds"):
                    continue
                full = self.PREFIX + name
                lines += [f"# HELP {full} {self.HELP.get(name, name)}", f"# TYPE {full} counter"]
                rows = [(lb, v, n) for (nm, lb, v), n in self._counters.items() if nm == name]
                if not rows:
                    lines.append(f"{full} 0")
                for label, value, n in sorted(rows):
                    lines.append(f"{full}{_labels(label, value)} {n}")
            for name in sorted({n for n in self.HELP if n.endswith("_seconds")}):
                h = self._hist.get(name, Histogram())
                full = self.PREFIX + name
                lines += [f"# HELP {full} {self.HELP[name]}", f"# TYPE {full} histogram"]
                for bound, n in zip(h.bounds, h.counts, strict=True):
                    lines.append(f'{full}_bucket{{le="{bound:g}"}} {n}')
                lines += [f'{full}_bucket{{le="+Inf"}} {h.n}', f"{full}_sum {h.total:.6f}",
                          f"{full}_count {h.n}"]  # fmt: skip
        typed: set[str] = set()
        for source in self._gauges:
            for gauge, reading in sorted(source().items()):
                full = self.PREFIX + gauge
                base = full.partition("{")[0]
                if base not in typed:
                    typed.add(base)
                    lines.append(f"# TYPE {base} gauge")
                lines.append(f"{full} {reading:g}")
        return "\n".join(lines) + "\n"


def _labels(label: str, value: str) -> str:
    if not label:
        return ""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{{{label}="{escaped}"}}'


__all__ = ["BUCKETS", "Histogram", "Metrics"]
