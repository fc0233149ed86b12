"""The outbox: every written result reaches every destination, however long a PACS is down.

A result is ``written`` when its SR is in the results spool; the outbox sends it by C-STORE to
each configured destination and records each confirmation in the journal (a restart never
sends a confirmed result to the same destination again). A destination that refuses or cannot
be reached is retried with exponential back-off (``[forward]``), other destinations go on; a
result is ``forwarded`` once every destination confirmed it. The SR's SOP Instance UID is
derived from the film and the model, so a result sent twice (a crash between a PACS's
confirmation and our journal write) is the same instance at the PACS, stored once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgevcf.serve.config import Destination, ServeConfig
from edgevcf.serve.journal import Job, Journal
from edgevcf.serve.metrics import Metrics
from edgevcf.serve.scp import client_tls, no_delay

log = logging.getLogger(__name__)

#: Results sent over one association before it is released (keeps a PACS's queue short).
BATCH = 64


#: C-STORE statuses that mean the SR is stored: success, and the coercion / element warnings.
STORED = (0x0000, 0xB000, 0xB007, 0xB006)


def associate_for_srs(our_ae: str, ae_title: str, host: str, port: int, tls: Any = None) -> Any:
    """An association that may send Comprehensive SRs (Nagle off; 15 s to connect, 60 s for a
    response): the outbox's and the shadow QA node's."""
    from pynetdicom import AE, evt

    from edgevcf.serve.sr import COMPREHENSIVE_SR

    ae = AE(ae_title=our_ae)
    ae.add_requested_context(COMPREHENSIVE_SR, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    ae.acse_timeout = ae.network_timeout = 15
    ae.dimse_timeout = 60
    return ae.associate(host, port, ae_title=ae_title, tls_args=tls,
                        evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])  # fmt: skip


@dataclass
class _Backoff:
    """When a destination may be tried again."""

    failures: int = 0
    next_try: float = 0.0
    last_error: str = ""
    confirmed: int = 0


class Outbox:
    """A thread that delivers the journal's ``written`` results (see the module docstring)."""

    def __init__(
        self,
        config: ServeConfig,
        journal: Journal,
        metrics: Metrics,
        on_forwarded: Callable[[Job], None],
    ) -> None:
        self.config = config
        self.journal = journal
        self.metrics = metrics
        self.on_forwarded = on_forwarded
        self.state = {self.name(d): _Backoff() for d in config.destinations}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgevcf-outbox", daemon=True)

    @staticmethod
    def name(d: Destination) -> str:
        """How a destination is named in the journal, metrics and logs."""
        return f"{d.ae_title}@{d.host}:{d.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """A result was written: look at the journal now rather than at the next tick."""
        self._wake.set()

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                pending = self.journal.in_state("written", limit=BATCH * 4)
                if pending:
                    self._deliver(pending)
            except Exception:  # the outbox must outlive any one failure
                log.exception("outbox: unexpected failure (retrying)")
                pending = []
            self._wake.wait(self._sleep(bool(pending)))

    def _sleep(self, had_work: bool) -> float:
        """Until the next retry is due (or 1 s), and at once while work is flowing."""
        now = time.monotonic()
        due = [s.next_try - now for s in self.state.values() if s.failures]
        if had_work and not due:
            return 0.0
        return max(0.05, min([1.0, *due]))

    def _deliver(self, jobs: list[Job]) -> None:
        now = time.monotonic()
        done = {j.key: self.journal.deliveries(j.key) for j in jobs}  # read once per pass
        for dest in self.config.destinations:
            name = self.name(dest)
            st = self.state[name]
            if st.failures and now < st.next_try:
                continue
            todo = [j for j in jobs if name not in done[j.key]]
            for key in self._send(dest, name, todo[:BATCH]) if todo else ():
                done[key].add(name)
        for job in jobs:
            if all(self.name(d) in done[job.key] for d in self.config.destinations):
                self.journal.advance(job.key, "forwarded")
                self.metrics.observe("result_seconds", time.time() - job.received_at)
                self.on_forwarded(job)

    def _send(self, dest: Destination, name: str, jobs: list[Job]) -> list[str]:
        """One association to ``dest`` for ``jobs``; back-off on any failure. Returns the keys
        the destination confirmed (each also journaled)."""
        from pydicom import dcmread

        tls = client_tls(self.config, dest.host) if dest.tls else None
        assoc = associate_for_srs(self.config.listen.ae_title, dest.ae_title, dest.host,
                                  dest.port, tls)  # fmt: skip
        if not assoc.is_established:
            self._failed(name, "association not established (down, or not accepting us)")
            return []
        confirmed: list[str] = []
        try:
            for job in jobs:
                if job.sr is None:
                    continue
                status = assoc.send_c_store(dcmread(job.sr))
                code = int(getattr(status, "Status", -1)) if status else -1
                if code in STORED:
                    self.journal.delivered(job.key, name)
                    confirmed.append(job.key)
                    self.metrics.inc("forwarded_total", "destination", dest.ae_title)
                    st = self.state[name]
                    st.failures, st.last_error, st.confirmed = 0, "", st.confirmed + 1
                else:
                    self.journal.attempt(job.key)
                    why = f"status 0x{code:04X}" if code >= 0 else "no response"
                    self._failed(name, f"C-STORE refused ({why})")
                    break
                if not assoc.is_established:
                    self._failed(name, "association ended during sending")
                    break
        finally:
            if assoc.is_established:
                assoc.release()
        return confirmed

    def _failed(self, name: str, why: str) -> None:
        st = self.state[name]
        st.failures += 1
        f = self.config.forward
        delay = min(f.retry_max_s, f.retry_initial_s * 2 ** (st.failures - 1))
        st.next_try = time.monotonic() + delay
        st.last_error = why
        self.metrics.inc("forward_failures_total", "destination", name.split("@")[0])
        log.warning("forward to %s failed (%s); retry in %.0f s", name, why, delay)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per destination: failures in a row, last error, confirmed this run."""
        now = time.monotonic()
        return {
            n: {
                "failures": s.failures,
                "retry_in_s": round(max(0.0, s.next_try - now), 1) if s.failures else 0.0,
                "last_error": s.last_error,
                "confirmed": s.confirmed,
            }
            for n, s in self.state.items()
        }


__all__ = ["Outbox"]
