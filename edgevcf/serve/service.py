"""``edgevcf serve``: films in over DICOM, one Structured Report out per film, none lost.

The pieces and who owns what:

* :mod:`~edgevcf.serve.scp` decides what may come in and answers the modality;
* :class:`Service.store` (here) puts a film on disk (:mod:`~edgevcf.serve.spool`) and in the
  journal (:mod:`~edgevcf.serve.journal`) *before* success is answered;
* a pool of scoring threads (here) runs the bundle's :class:`~edgevcf.runtime.Predictor` with
  its quality gate, writes the SR (:mod:`~edgevcf.serve.sr`) to the results spool and one JSON
  line to the result log;
* :mod:`~edgevcf.serve.forward` delivers every written SR to every destination;
* :mod:`~edgevcf.serve.http` shows health, metrics and status.

After a crash, :meth:`Service.start` resumes every unfinished job from the journal. Nothing in
the logs, metrics, result log or status page names a patient: films are known by the SHA-256 of
their SOP Instance UID.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevcf.errors import ConfigError, EdgeVCFError, OutputError
from edgevcf.serve.config import ServeConfig
from edgevcf.serve.forward import Outbox
from edgevcf.serve.journal import Job, Journal, uid_key
from edgevcf.serve.metrics import Metrics
from edgevcf.serve.scp import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    SUCCESS,
    Receiver,
    Status,
)  # fmt: skip
from edgevcf.serve.spool import Spool

log = logging.getLogger(__name__)

#: Attributes a film must carry for its SR to be placed in its study (type 1 in every accepted
#: IOD); a film without them is refused (0xA900) instead of accepted and left without a result.
REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Seconds before a scoring step that failed for lack of disk space is tried again.
DISK_RETRY_S = 5.0


@dataclass(frozen=True)
class Addresses:
    """Where a started service listens."""

    dicom: tuple[str, int]
    http: tuple[str, int] | None


class Service:
    """The node; :meth:`start`, then :meth:`stop` (or :meth:`serve_forever`)."""

    def __init__(self, bundle: str | os.PathLike[str], config: ServeConfig) -> None:
        self.bundle_path = Path(bundle)
        self.config = config
        self.metrics = Metrics()
        self.started_at = time.time()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._log_lock = threading.Lock()
        self.addresses: Addresses | None = None
        self._http: Any = None

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Addresses:
        """Load the bundle, open the journal and spools, resume, then open the ports.

        Raises:
            BundleError: the bundle does not verify (nothing is opened).
            ConfigError: a port cannot be opened, or a TLS file cannot be read.
        """
        from edgevcf.deps import require
        from edgevcf.runtime import Predictor

        require("pynetdicom", "edgevcf serve")
        st = self.config.storage
        cores = os.cpu_count() or 1
        n = self.config.scoring.workers or cores
        trust = None
        if self.config.trust.keys:
            from edgevcf.signing import Trust

            trust = Trust.load(list(self.config.trust.keys), self.config.trust.revoked)
        elif self.config.trust.revoked:
            raise ConfigError("[trust] revoked needs [trust] keys")
        self.predictor = Predictor.from_bundle(
            self.bundle_path, self.config.scoring.backend, threads=max(1, cores // n),
            trust=trust,
        )  # fmt: skip
        self.identity = _identity(self.predictor)
        root = Path(st.spool)
        self.films = Spool(root / "films", reserve_mb=st.reserve_mb)
        self.results = Spool(root / "results", reserve_mb=st.reserve_mb / 2)
        self.result_log = root / "results.jsonl"
        self.journal = Journal(st.journal)
        self.metrics.gauges(self._gauges)
        self.outbox = Outbox(self.config, self.journal, self.metrics, self._finished)
        resumed = self.journal.unfinished()
        for job in resumed:
            if job.state in ("received", "scored"):
                self._queue.put(job.key)
        if resumed:
            log.info("resuming %d unfinished job(s) from the journal", len(resumed))
        for i in range(n):
            t = threading.Thread(target=self._work, name=f"edgevcf-score-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        self.outbox.start()
        self.receiver = Receiver(self.config, self.store, self._rejected)
        dicom = self.receiver.start()
        http = None
        if self.config.http.port:
            from edgevcf.serve.http import start_http

            self._http = start_http(self)
            http = self._http.server_address[:2]
        self.addresses = Addresses(dicom, http)
        log.info("listening as %s on %s:%d", self.config.listen.ae_title, *dicom)
        return self.addresses

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, let scoring of queued films finish (up to ``timeout``), close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.receiver.stop()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(max(0.1, deadline - time.monotonic()))
        self.outbox.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.journal.close()

    def serve_forever(self) -> None:
        """Block until :meth:`stop` is called (e.g. from a signal handler)."""
        self._stopped.wait()

    # -------------------------------------------------------------- receiving
    def store(self, data: bytes, sop_class: str, sop_instance: str, calling_ae: str) -> Status:
        """Take one film (the C-STORE handler): success only once it is on disk and journaled."""
        from pydicom import dcmread

        if self._stopped.is_set():
            return Status(OUT_OF_RESOURCES, "node is stopping")
        try:
            ds = dcmread(io.BytesIO(data))
            missing = [k for k in REQUIRED if not str(ds.get(k, "") or "").strip()]
            short = _short_pixels(ds)
        except Exception as exc:  # any parse failure is the sender's data
            self._refused("malformed")
            log.warning("refused a data set from %s: not parseable (%s)", calling_ae,
                        type(exc).__name__)  # fmt: skip
            return Status(CANNOT_UNDERSTAND, "data set cannot be parsed")
        if missing:
            self._refused("incomplete")
            return Status(DATASET_MISMATCH, f"missing {', '.join(missing)}")
        if short:
            self._refused("malformed")
            return Status(CANNOT_UNDERSTAND, short)
        if (
            str(ds.SOPInstanceUID).strip() != sop_instance.strip()
            or str(ds.SOPClassUID).strip() != sop_class.strip()
        ):
            self._refused("mismatch")
            return Status(DATASET_MISMATCH, "data set UIDs differ from the request's")
        key = uid_key(sop_instance)
        if self.journal.get(key) is not None:
            self.metrics.inc("duplicates_total")
            log.info("film %s received again: already journaled, no second result", key[:12])
            return Status(SUCCESS)
        try:
            path = self.films.put(key, data)
            new = self.journal.receive(sop_instance, path)
        except (OutputError, OSError) as exc:
            self._refused("out_of_resources")
            log.warning("refused film %s: %s", key[:12], getattr(exc, "message", exc))
            return Status(OUT_OF_RESOURCES, "no space to store the film; retry later")
        except Exception as exc:  # e.g. sqlite3.OperationalError (disk full)
            self._refused("out_of_resources")
            log.warning("refused film %s: journal: %s", key[:12], type(exc).__name__)
            return Status(OUT_OF_RESOURCES, "cannot journal the film; retry later")
        if new:
            self.metrics.inc("received_total")
            self._queue.put(key)
        else:
            self.metrics.inc("duplicates_total")
        return Status(SUCCESS)

    def _refused(self, reason: str) -> None:
        self.metrics.inc("refused_total", "reason", reason)

    def _rejected(self, reason: str) -> None:
        self.metrics.inc("associations_rejected_total", "reason", reason)

    # -------------------------------------------------------------- scoring
    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            try:
                self._process(key)
            except OutputError as exc:  # the results disk is full: try again later
                log.warning("job %s waits for disk space: %s", key[:12], exc.message)
                threading.Timer(DISK_RETRY_S, self._queue.put, (key,)).start()
            except Exception as exc:  # one film must never stop the pool
                log.exception("job %s failed", key[:12])
                self.journal.fail(key, f"{type(exc).__name__}: {exc}"[:300])

    def _process(self, key: str) -> None:
        job = self.journal.get(key)
        if job is None or job.state not in ("received", "scored"):
            return
        if job.state == "received":
            result = self._score(job)
            self.journal.advance(key, "scored", result=result)
        else:
            result = job.result or {}
        self._write(job, result)

    def _score(self, job: Job) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            p = self.predictor.predict(job.spool)
            result = {
                "status": p.status, "probability": p.probability, "decision": p.decision,
                "reason": p.reason if p.status != "ok" else "",
                "timings_ms": {k: round(v, 2) for k, v in p.timings_ms.items()},
            }  # fmt: skip
        except EdgeVCFError as exc:
            result = {"status": "refused", "probability": None, "decision": None,
                      "reason": _no_path(exc.message, job.spool)}  # fmt: skip
        except Exception as exc:  # an engine failure is a result, not a crash
            log.warning("scoring job %s failed: %s", job.key[:12], type(exc).__name__)
            result = {"status": "error", "probability": None, "decision": None,
                      "reason": f"scoring failed ({type(exc).__name__})"}  # fmt: skip
        result["threshold"] = self.predictor.threshold
        result["model_id"] = self.predictor.model_id
        self.metrics.inc("scored_total", "status", str(result["status"]))
        self.metrics.observe("score_seconds", time.perf_counter() - t0)
        return result

    def _write(self, job: Job, result: dict[str, Any]) -> None:
        from pydicom import dcmread

        from edgevcf.serve.sr import Finding, derived_uid, result_sr

        film = dcmread(job.spool, stop_before_pixels=True)
        ok = result["status"] == "ok" and result["probability"] is not None
        finding = Finding(ok, result["decision"] if ok else None, result["probability"],
                          float(result["threshold"]), str(result.get("reason", "")))  # fmt: skip
        model = self.identity.model_id
        sr = result_sr(
            film, finding, self.identity,
            series_uid=derived_uid(str(film.StudyInstanceUID), model, "series"),
            sop_uid=derived_uid(str(film.SOPInstanceUID), model),
        )  # fmt: skip
        buf = io.BytesIO()
        sr.save_as(buf, enforce_file_format=True)
        path = self.results.put(job.key, buf.getvalue())
        self.journal.advance(job.key, "written", sr=path)
        self.metrics.inc("results_written_total")
        line = {"uid_sha256": job.key, "received_at": round(job.received_at, 3),
                "written_at": round(time.time(), 3), **result}  # fmt: skip
        with self._log_lock, open(self.result_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if not self.config.destinations:  # nobody to send to: the result log is the output
            self.journal.advance(job.key, "forwarded")
            self._finished(job)
        else:
            self.outbox.wake()

    def _finished(self, job: Job) -> None:
        """A job's result reached everyone: its film and SR leave the spool (retention 0)."""
        if self.config.storage.retention_hours == 0:
            self.films.remove(job.key)
            self.results.remove(job.key)
        else:
            self._sweep()

    def _sweep(self) -> None:
        cutoff = time.time() - self.config.storage.retention_hours * 3600
        for job in self.journal.finished_before(cutoff):
            self.films.remove(job.key)
            self.results.remove(job.key)

    # -------------------------------------------------------------- watching
    def _gauges(self) -> dict[str, float]:
        counts = self.journal.counts()
        out = {f'jobs{{state="{s}"}}': float(n) for s, n in counts.items()}
        out["scoring_queue"] = float(self._queue.qsize())
        out["uptime_seconds"] = time.time() - self.started_at
        return out

    def healthy(self) -> bool:
        """Whether every scoring thread and the outbox are alive and the port is open."""
        threads = [*self._workers, self.outbox._thread]
        return not self._stopped.is_set() and all(t.is_alive() for t in threads)

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` adds to its verdict."""
        return {"model_id": self.identity.model_id, "queue": self._queue.qsize(),
                "uptime_s": round(time.time() - self.started_at, 1)}  # fmt: skip

    def status(self) -> dict[str, Any]:
        """What the status page shows (hashed UIDs and decisions only)."""
        recent = []
        for job in self.journal.recent(20):
            r = job.result or {}
            recent.append({
                "uid_sha256": job.key[:16], "state": job.state, "status": r.get("status", ""),
                "decision": _DECISION.get(r.get("decision"), "-"),
                "probability": r.get("probability"), "updated_at": job.updated_at,
            })  # fmt: skip
        return {
            "ae_title": self.config.listen.ae_title,
            "model_id": self.identity.model_id,
            "backbone": self.identity.backbone,
            "precision": self.identity.precision,
            "runtime": self.identity.runtime,
            "signer_key_id": self.identity.signer_key_id,
            "threshold": self.predictor.threshold,
            "jobs": self.journal.counts(),
            "scoring_queue": self._queue.qsize(),
            "destinations": self.outbox.snapshot(),
            "received": self.metrics.count("received_total"),
            "refused": self.metrics.count("refused_total"),
            "uptime_s": round(time.time() - self.started_at, 1),
            "recent": recent,
        }


_DECISION: dict[Any, str] = {True: "fresh", False: "not fresh"}


def _identity(predictor: Any) -> Any:
    from edgevcf.serve.sr import ModelIdentity

    m = predictor.bundle.manifest
    return ModelIdentity(
        model_id=predictor.model_id,
        backbone=str(m.get("backbone", "unknown")),
        precision=str(m.get("precision", "unknown")),
        runtime=predictor.artifact.runtime,
        signer_key_id=predictor.bundle.signer_key_id,
    )


def _short_pixels(ds: Any) -> str:
    """Why native pixel data is shorter than its header says (a truncated film), or ""."""
    if "PixelData" not in ds or ds.file_meta.TransferSyntaxUID.is_compressed:
        return ""
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        bits = int(ds.BitsAllocated)
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * frames
    except (AttributeError, TypeError, ValueError):
        return "image header incomplete (Rows, Columns, Bits Allocated)"
    need = (n * bits + 7) // 8
    have = len(ds.PixelData)
    return f"pixel data truncated ({have} of {need} bytes)" if have < need else ""


def _no_path(message: str, path: str) -> str:
    """A reader's message without the spool path (the SR and the result log need neither)."""
    return message.replace(f"{path}: ", "").replace(path, "the film")


__all__ = ["Addresses", "Service"]
