"""The node's side of shadow mode: a candidate bundle scored after the served one, compared.

Every accepted film is scored by the candidate in the same worker, *after* the primary's result
is written and in the outbox (the primary's SR waits for nothing); the film stays in the spool
until the candidate has seen it. The candidate's result goes to the journal beside the
primary's (``shadow_results``) with the running tally in one transaction, never to a
destination. ``/metrics`` and the status page show the live comparison
(:mod:`edgevcf.watch.shadow`: agreement, Cohen's kappa, positive rates and their paired
difference, exact McNemar) and the candidate's scoring time. A new candidate starts a new tally.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from edgevcf.serve.journal import Journal
from edgevcf.watch.shadow import ShadowTally

log = logging.getLogger(__name__)


def _decision(result: dict[str, Any]) -> bool | None:
    if result.get("status") != "ok" or result.get("decision") is None:
        return None
    return bool(result["decision"])


class NodeShadow:
    """Shadow statistics of one (primary, candidate) pair, durable in the journal."""

    def __init__(self, journal: Journal, primary_id: str, candidate_id: str) -> None:
        self.journal = journal
        self.primary_id = primary_id
        self.candidate_id = candidate_id
        self._lock = threading.Lock()
        self.salt = journal.salt()
        state = journal.shadow_state()
        same = (
            state and state.get("candidate") == candidate_id and state.get("primary") == primary_id
        )
        self.tally = ShadowTally.from_dict(state["tally"]) if same and state else ShadowTally()

    def film(self, ds: Any) -> dict[str, Any]:
        """What the report joins labels on, from the film's header: salted hashes of its SOP
        Instance UID and accession number, and its subgroup levels (never a clear identifier)."""
        from edgevcf import subgroups
        from edgevcf.serve.journal import salted

        return {"uid_hash": salted(self.salt, str(ds.get("SOPInstanceUID", ""))),
                "accession_hash": salted(self.salt, str(ds.get("AccessionNumber", ""))),
                "levels": subgroups.from_header(ds)}  # fmt: skip

    def add(self, key: str, film: dict[str, Any], primary: dict[str, Any],
            candidate: dict[str, Any]) -> None:  # fmt: skip
        """One film's pair of results (a film compared before is not counted again)."""
        keep = ("status", "probability", "decision", "model_id", "threshold")
        slim = {k: primary.get(k) for k in keep}
        with self._lock:
            tally = ShadowTally.from_dict(self.tally.to_dict())
            tally.add(_decision(primary), _decision(candidate))
            state = {"primary": self.primary_id, "candidate": self.candidate_id,
                     "tally": tally.to_dict()}  # fmt: skip
            if self.journal.shadow_add(key, self.candidate_id, film, slim, candidate, state):
                self.tally = tally

    def compare(self) -> dict[str, Any]:
        with self._lock:
            return self.tally.compare()

    def gauges(self) -> dict[str, float]:
        """What ``/metrics`` shows (no identifier; bundle ids are in the status page)."""
        c = self.compare()
        out = {"shadow_films": float(c["films"]), "shadow_unpaired": float(c["unpaired"])}
        if c["films"]:
            out["shadow_agreement"] = c["agreement"]["value"]
            if c["kappa"]["value"] is not None:
                out["shadow_kappa"] = c["kappa"]["value"]
            out['shadow_positive_rate{bundle="primary"}'] = c["positive_rate"]["primary"]
            out['shadow_positive_rate{bundle="candidate"}'] = c["positive_rate"]["candidate"]
            out["shadow_difference"] = c["difference"]["value"]
            out["shadow_difference_ci_low"] = c["difference"]["ci_low"]
            out["shadow_difference_ci_high"] = c["difference"]["ci_high"]
            out["shadow_mcnemar_p"] = c["mcnemar_p"]
        return out

    def status(self) -> dict[str, Any]:
        return {"primary": self.primary_id, "candidate": self.candidate_id, **self.compare()}


class QaSender:
    """Best-effort delivery of the candidate's SRs (marked NOT FOR CLINICAL USE) to one QA node:
    a queue and a thread, a few tries each, counted — never the clinical outbox, never its
    journal (the comparison itself is in the journal already)."""

    TRIES = 3

    def __init__(self, ae_title: str, host: str, port: int, our_ae: str, metrics: Any) -> None:
        import queue

        self.target = (ae_title, host, port)
        self.our_ae = our_ae
        self.metrics = metrics
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="edgevcf-shadow-qa", daemon=True)
        self._thread.start()

    def put(self, sr: Any) -> None:
        """Queue one SR (dropped, and counted, when the QA node has fallen far behind)."""
        import queue

        try:
            self._queue.put_nowait(sr)
        except queue.Full:
            self.metrics.inc("shadow_qa_failures_total", "reason", "queue full")

    def _run(self) -> None:
        while True:
            sr = self._queue.get()
            if sr is None:
                return
            for attempt in range(self.TRIES):
                if self._send(sr):
                    self.metrics.inc("shadow_qa_sent_total")
                    break
                time.sleep(2**attempt)
            else:
                self.metrics.inc("shadow_qa_failures_total", "reason", "not delivered")

    def _send(self, sr: Any) -> bool:
        from edgevcf.serve.forward import STORED, associate_for_srs

        title, host, port = self.target
        assoc = associate_for_srs(self.our_ae, title, host, port)
        if not assoc.is_established:
            return False
        try:
            status = assoc.send_c_store(sr)
            return int(getattr(status, "Status", -1)) in STORED
        except Exception as exc:  # a QA node's trouble never reaches the clinical path
            log.warning("shadow QA delivery failed: %s", type(exc).__name__)
            return False
        finally:
            if assoc.is_established:
                assoc.release()

    def stop(self, timeout: float = 10.0) -> None:
        import contextlib
        import queue

        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1)
        self._thread.join(timeout)
