"""``edgevcf serve``: films in over DICOM, one Structured Report out per film, none lost.

The pieces and who owns what:

* :mod:`~edgevcf.serve.scp` decides what may come in and answers the modality;
* :class:`Service.store` (here) puts a film on disk (:mod:`~edgevcf.serve.spool`) and in the
  journal (:mod:`~edgevcf.serve.journal`) *before* success is answered;
* a pool of scoring slots (here) hands each film to a supervised worker process
  (:mod:`~edgevcf.serve.workers`: decode, preprocess, quality gate, inference, with a time limit),
  writes the SR (:mod:`~edgevcf.serve.sr`) to the results spool and one JSON line to the result
  log; a film whose worker hangs or dies is tried again, a bounded number of times, then
  quarantined with an "undetermined" SR;
* :mod:`~edgevcf.serve.forward` delivers every written SR to every destination;
* :mod:`~edgevcf.serve.http` shows health, metrics and status.

After a crash, :meth:`Service.start` resumes every unfinished job from the journal (a film whose
tries ran out is quarantined, never scored again: no crash loop). Nothing in
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

from edgevcf.errors import ConfigError, OutputError
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
from edgevcf.serve.workers import (
    ProcessScorer,
    StopRequestedError,
    ThreadScorer,
    WorkerLostError,
    WorkerSpec,
)  # fmt: skip

log = logging.getLogger(__name__)

#: Attributes a film must carry for its SR to be placed in its study (type 1 in every accepted
#: IOD); a film without them is refused (0xA900) instead of accepted and left without a result.
REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
#: Seconds before a scoring step that failed for lack of disk space is tried again.
DISK_RETRY_S = 5.0
#: Seconds a stopping node lets the films in flight finish before their workers are killed
#: (those films stay in the journal and are scored at the next start).
STOP_GRACE_S = 5.0
#: Longest wait between two tries to start a worker that failed to start.
RESTART_BACKOFF_MAX_S = 30.0


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
        self._queue: queue.Queue[str] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self.scorers: list[Any] = []
        self._stopped = threading.Event()
        self._log_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending = 0  # films queued or being scored
        self._progress_at = time.monotonic()  # last film scored (or work arriving at an idle node)
        self.addresses: Addresses | None = None
        self._http: Any = None
        self._watchdog: Any = None

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Addresses:
        """Load the bundle, open the journal and spools, resume, then open the ports.

        Raises:
            BundleError: the bundle does not verify (nothing is opened).
            ConfigError: a port cannot be opened, or a TLS file cannot be read.
        """
        from edgevcf.bundle import Bundle
        from edgevcf.deps import require
        from edgevcf.runtime import choose_artifact

        require("pynetdicom", "edgevcf serve")
        sc = self.config.scoring
        cores = os.cpu_count() or 1
        n = sc.workers or cores
        trust = None
        if self.config.trust.keys:
            from edgevcf.signing import Trust

            trust = Trust.load(list(self.config.trust.keys), self.config.trust.revoked)
        elif self.config.trust.revoked:
            raise ConfigError("[trust] revoked needs [trust] keys")
        # The node verifies the bundle itself (and each worker again) but loads no engine
        # unless it scores in its own threads.
        self.bundle = Bundle.load(self.bundle_path, trust=trust)
        self.artifact = choose_artifact(self.bundle, sc.backend)
        self.threshold = self.bundle.threshold
        self.identity = _identity(self.bundle, self.artifact)
        self.candidate = None
        if self.config.shadow.bundle:  # the same trust rules: an unsigned candidate never runs
            self.candidate = Bundle.load(self.config.shadow.bundle, trust=trust)
            choose_artifact(self.candidate, sc.backend)
        tk = self.config.trust
        spec = WorkerSpec(str(self.bundle_path), self.artifact.name, max(1, cores // n),
                          tuple(tk.keys), tuple(tk.revoked),
                          shadow=self.config.shadow.bundle)  # fmt: skip
        self.scorers = self._start_scorers(spec, n)
        try:
            return self._open()
        except BaseException:  # a port in use, an unreadable journal: no worker left behind
            for s in self.scorers:
                s.close(grace=0)
            raise

    def _open(self) -> Addresses:
        """Spools, journal, resume, the scoring slots, the outbox, then the ports."""
        st = self.config.storage
        root = Path(st.spool)
        self.films = Spool(root / "films", reserve_mb=st.reserve_mb)
        self.results = Spool(root / "results", reserve_mb=st.reserve_mb / 2)
        self.quarantine = Spool(root / "quarantine", reserve_mb=0)
        self.result_log = root / "results.jsonl"
        self.journal = Journal(st.journal)
        self.metrics.gauges(self._gauges)
        self.watch = None
        if self.config.watch.enabled:
            from edgevcf.serve.watching import NodeWatch

            self.watch = NodeWatch(self.journal, self.config.watch, self.bundle.id,
                                   self.bundle.manifest)  # fmt: skip
            self.metrics.gauges(self.watch.gauges)
        self.shadow = None
        self.qa: Any = None
        self._shadow_hold: dict[str, bool] = {}  # films the candidate has yet to see: finished?
        if self.candidate is not None:
            from edgevcf.serve.shadowing import NodeShadow

            self.shadow = NodeShadow(self.journal, self.bundle.id, self.candidate.id)
            self.metrics.gauges(self.shadow.gauges)
            sh = self.config.shadow
            if sh.qa_port:
                from edgevcf.runtime import choose_artifact
                from edgevcf.serve.shadowing import QaSender

                art = choose_artifact(self.candidate, self.config.scoring.backend)
                self.candidate_identity = _identity(self.candidate, art)
                self.qa = QaSender(sh.qa_ae_title, sh.qa_host, sh.qa_port,
                                   self.config.listen.ae_title, self.metrics)  # fmt: skip
        self.outbox = Outbox(self.config, self.journal, self.metrics, self._finished)
        resumed = self.journal.unfinished()
        for job in resumed:
            if job.state in ("received", "scored"):
                self._enqueue(job.key)
        if resumed:
            log.info("resuming %d unfinished job(s) from the journal", len(resumed))
        for i, scorer in enumerate(self.scorers):
            t = threading.Thread(target=self._work, args=(scorer,), name=f"edgevcf-score-{i}",
                                 daemon=True)  # fmt: skip
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
        from edgevcf.serve import systemd

        systemd.notify(f"READY=1\nSTATUS=listening on {dicom[0]}:{dicom[1]}")
        self._watchdog = systemd.Watchdog.start_if_asked(self.healthy, self.health)
        return self.addresses

    def _start_scorers(self, spec: WorkerSpec, n: int) -> list[Any]:
        """``n`` scoring slots, loaded and warmed before a port opens (a bundle that cannot
        load fails here, with the worker's own error)."""
        if self.config.scoring.isolation == "thread":
            from edgevcf.runtime import Predictor

            predictor = Predictor(self.bundle, self.artifact, threads=spec.threads)
            candidate = None
            if self.candidate is not None:
                from edgevcf.runtime import choose_artifact

                art = choose_artifact(self.candidate, self.config.scoring.backend)
                candidate = Predictor(self.candidate, art, threads=spec.threads)
            return [ThreadScorer(predictor, candidate) for _ in range(n)]
        scorers = [ProcessScorer(spec, f"edgevcf-score-{i}") for i in range(n)]
        try:
            for s in scorers:  # processes load in parallel; each warms before it is ready
                s.launch()
            for s in scorers:
                s.wait_ready()
        except BaseException:
            for s in scorers:
                s.close(grace=0)
            raise
        info = scorers[0].info
        log.info("%d scoring worker process(es) ready (load %.0f ms, warm-up %.0f ms)", n,
                 info.get("load_ms", 0), info.get("warm_ms", 0))  # fmt: skip
        return scorers

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting; let the films in flight finish (up to :data:`STOP_GRACE_S`, then
        their workers are killed); close. Queued films stay in the journal for the next start.

        Bounded whatever a worker is doing: no engine code runs in this process (unless
        ``isolation = "thread"``).
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        from edgevcf.serve import systemd

        systemd.notify("STOPPING=1")
        if self._watchdog is not None:
            self._watchdog.stop()
        self.receiver.stop()
        grace = min(STOP_GRACE_S, timeout / 3)
        at = time.monotonic() + grace
        for s in self.scorers:
            s.interrupt(at)
        for t in self._workers:
            t.join(max(0.1, at + 2.0 - time.monotonic()))
        for s in self.scorers:
            s.close(grace=1.0)
        self.outbox.stop(max(1.0, min(10.0, timeout / 3)))
        if self.qa is not None:
            self.qa.stop(max(1.0, min(5.0, timeout / 6)))
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
            self._enqueue(key)
        else:
            self.metrics.inc("duplicates_total")
        return Status(SUCCESS)

    def _refused(self, reason: str) -> None:
        self.metrics.inc("refused_total", "reason", reason)

    def _rejected(self, reason: str) -> None:
        self.metrics.inc("associations_rejected_total", "reason", reason)

    # -------------------------------------------------------------- scoring
    def _enqueue(self, key: str) -> None:
        with self._pending_lock:
            if self._pending == 0:  # an idle node starts its progress clock now
                self._progress_at = time.monotonic()
            self._pending += 1
        self._queue.put(key)

    def _progressed(self) -> None:
        with self._pending_lock:
            self._progress_at = time.monotonic()

    def _work(self, scorer: Any) -> None:
        """One scoring slot: take a film, have the slot's worker score it, write its result."""
        if isinstance(scorer, ThreadScorer):
            try:
                scorer.start()  # this thread's engine state, warmed alone (Backend.warm)
            except Exception:  # its films will say how the engine fails
                log.exception("warming the engine on %s failed", threading.current_thread().name)
        while not self._stopped.is_set():
            try:
                key = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._process(key, scorer)
            except StopRequestedError:  # the node is stopping: the film stays for the next start
                log.info("job %s left for the next start", key[:12])
            except OutputError as exc:  # the results disk is full: try again later
                log.warning("job %s waits for disk space: %s", key[:12], exc.message)
                threading.Timer(DISK_RETRY_S, self._enqueue, (key,)).start()
            except Exception as exc:  # one film must never stop the pool
                log.exception("job %s failed", key[:12])
                self.journal.fail(key, f"{type(exc).__name__}: {exc}"[:300])
            finally:
                with self._pending_lock:
                    self._pending -= 1

    def _process(self, key: str, scorer: Any) -> None:
        job = self.journal.get(key)
        if job is None or job.state not in ("received", "scored"):
            return
        if job.state == "received":
            result = self._score(job, scorer)
            if result is None:  # queued again for another try
                return
            self.journal.advance(key, "scored", result=result)
            job = self.journal.get(key) or job  # a quarantined film has moved
        else:
            result = job.result or {}
        if self.shadow is not None:
            with self._log_lock:
                self._shadow_hold[key] = False
        header = None
        try:
            header = self._write(job, result)
        finally:
            if self.shadow is not None:
                self._shadow_turn(job, result, scorer, header)

    def _shadow_turn(self, job: Job, result: dict[str, Any], scorer: Any, header: Any) -> None:
        """The candidate scores the film after the primary's result is in the outbox; a lost
        worker or a failure costs the comparison one film, never the primary's result."""
        assert self.shadow is not None
        try:
            if not result.get("quarantined"):
                from pydicom import dcmread

                ds = header if header is not None else dcmread(job.spool, stop_before_pixels=True)
                film = self.shadow.film(ds)
                t0 = time.perf_counter()
                try:
                    shadow = scorer.score(job.spool, self.config.scoring.film_timeout_s,
                                          shadow=True)  # fmt: skip
                except WorkerLostError as exc:
                    shadow = {"status": "error", "probability": None, "decision": None,
                              "reason": f"candidate: {exc.reason}"}  # fmt: skip
                    self.metrics.inc("worker_restarts_total", "reason", exc.kind)
                self.metrics.observe("shadow_score_seconds", time.perf_counter() - t0)
                assert self.candidate is not None
                shadow |= {"model_id": self.shadow.candidate_id,
                           "threshold": self.candidate.threshold}  # fmt: skip
                self.metrics.inc("shadow_scored_total", "status", str(shadow["status"]))
                self.shadow.add(job.key, film, result, shadow)
                if self.qa is not None and shadow["status"] in ("ok", "not_assessable"):
                    self.qa.put(self._qa_sr(ds, shadow))
        finally:
            with self._log_lock:
                finished = self._shadow_hold.pop(job.key, False)
            if finished:
                self._finished(job)

    def _qa_sr(self, ds: Any, shadow: dict[str, Any]) -> Any:
        """The candidate's result as an SR marked NOT FOR CLINICAL USE (QA node only)."""
        from edgevcf.serve.sr import Finding, derived_uid, mark_not_for_clinical_use, result_sr

        ok = shadow["status"] == "ok" and shadow["probability"] is not None
        finding = Finding(ok, shadow["decision"] if ok else None, shadow["probability"],
                          float(shadow["threshold"]), str(shadow.get("reason", "")))  # fmt: skip
        cid = self.candidate_identity.model_id
        sr = result_sr(ds, finding, self.candidate_identity,
                       series_uid=derived_uid(str(ds.StudyInstanceUID), cid, "qa-series"),
                       sop_uid=derived_uid(str(ds.SOPInstanceUID), cid, "qa"))  # fmt: skip
        return mark_not_for_clinical_use(sr)

    def _score(self, job: Job, scorer: Any) -> dict[str, Any] | None:
        """The film's result; None when it was queued again after its worker was lost.

        Each try is counted in the journal before the worker gets the film, so a film that
        hangs or kills its worker — or the node — ends quarantined after ``max_tries``.
        """
        sc = self.config.scoring
        if job.tries >= sc.max_tries:  # tries used up before a restart
            why = job.reason or "scoring was begun and never finished (the node stopped)"
            return self._quarantine(job, f"{why} ({job.tries} tries)")
        self._ensure_started(scorer)
        tries = self.journal.begin_try(job.key)
        t0 = time.perf_counter()
        try:
            result = scorer.score(job.spool, sc.film_timeout_s)
        except StopRequestedError:
            self.journal.undo_try(job.key)
            raise
        except WorkerLostError as exc:
            self.metrics.inc("worker_restarts_total", "reason", exc.kind)
            log.warning("job %s: %s (try %d of %d); the worker is replaced", job.key[:12],
                        exc.reason, tries, sc.max_tries)  # fmt: skip
            self.journal.note(job.key, exc.reason)
            if tries >= sc.max_tries:
                return self._quarantine(job, f"{exc.reason} ({tries} tries)")
            self._enqueue(job.key)
            return None
        result["threshold"] = self.threshold
        result["model_id"] = self.bundle.id
        self.metrics.inc("scored_total", "status", str(result["status"]))
        self.metrics.observe("score_seconds", time.perf_counter() - t0)
        self._progressed()
        return result

    def _ensure_started(self, scorer: Any) -> None:
        """Start the slot's worker if it is not running, retrying with back-off.

        Raises:
            StopRequestedError: the node began to stop meanwhile.
        """
        wait = 1.0
        while not scorer.alive:
            if self._stopped.is_set():
                raise StopRequestedError()
            try:
                scorer.start()
                return
            except StopRequestedError:
                raise
            except Exception as exc:
                self.metrics.inc("worker_start_failures_total")
                log.error("scoring worker cannot start (%s); again in %.0f s",
                          getattr(exc, "message", exc), wait)  # fmt: skip
                if self._stopped.wait(wait):
                    raise StopRequestedError() from None
                wait = min(RESTART_BACKOFF_MAX_S, wait * 2)

    def _quarantine(self, job: Job, why: str) -> dict[str, Any]:
        """Keep the film aside for the site and give it an "undetermined" result."""
        path = self.quarantine.take(job.key, job.spool)
        self.journal.quarantine(job.key, path, why)
        self.metrics.inc("quarantined_total")
        self._progressed()
        log.error("film %s quarantined: %s", job.key[:12], why)
        return {"status": "error", "probability": None, "decision": None,
                "reason": f"not scored: {why}; the film is quarantined for review",
                "quarantined": True, "threshold": self.threshold,
                "model_id": self.bundle.id}  # fmt: skip

    def _write(self, job: Job, result: dict[str, Any]) -> Any:
        """The result's SR to the outbox and its line to the result log; the film's header
        (read here without pixels) for what comes after."""
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
        lines = [line, *self._watched(film, result, job.received_at)]
        with self._log_lock, open(self.result_log, "a", encoding="utf-8") as f:
            for one in lines:
                f.write(json.dumps(one, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if not self.config.destinations:  # nobody to send to: the result log is the output
            self.journal.advance(job.key, "forwarded")
            self._finished(job)
        else:
            self.outbox.wake()
        return film

    def _watched(self, film: Any, result: dict[str, Any], received_at: float) -> list[Any]:
        """The film's record to the drift watch; the alarms of a period it closed, as lines
        for the JSON-lines log (also logged and counted). An engine error is no evidence."""
        if self.watch is None or result.get("status") == "error":
            return []
        from edgevcf import subgroups

        alarms = self.watch.add(result, subgroups.from_header(film), received_at)
        for a in alarms:
            self.metrics.inc("watch_alarms_total", "signal", a.signal)
            log.warning("drift alarm: %s %s since period %s (raised %s)", a.signal,
                        a.direction, a.began, a.raised)  # fmt: skip
        return [{"event": "drift_alarm", "model_id": self.bundle.id, **a.to_dict()}
                for a in alarms]  # fmt: skip

    def _finished(self, job: Job) -> None:
        """A job's result reached everyone: its film and SR leave the spool (retention 0) —
        once the candidate, in shadow mode, has seen the film."""
        if self.shadow is not None:
            with self._log_lock:
                if job.key in self._shadow_hold:
                    self._shadow_hold[job.key] = True
                    return
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
        out["workers_alive"] = float(sum(bool(s.alive) for s in self.scorers))
        out["quarantined"] = float(self.journal.count_quarantined())
        out["seconds_since_progress"] = time.monotonic() - self._progress_at
        return out

    def stalled(self) -> str:
        """Why scoring has stalled (work waits, no worker progressed for ``stall_s``), or ""."""
        with self._pending_lock:
            pending, since = self._pending, time.monotonic() - self._progress_at
        limit = self.config.scoring.stall_s
        if pending and since > limit:
            return (f"no scoring progress for {since:.0f} s (limit {limit:g} s) with "
                    f"{pending} film(s) waiting")  # fmt: skip
        return ""

    def healthy(self) -> bool:
        """Whether every scoring slot and the outbox are alive and scoring makes progress."""
        threads = [*self._workers, self.outbox._thread]
        return (
            not self._stopped.is_set() and all(t.is_alive() for t in threads) and not self.stalled()
        )

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` adds to its verdict (with the reason when failing)."""
        out: dict[str, Any] = {
            "model_id": self.identity.model_id, "queue": self._queue.qsize(),
            "workers_alive": sum(bool(s.alive) for s in self.scorers),
            "uptime_s": round(time.time() - self.started_at, 1),
        }  # fmt: skip
        reasons = []
        if self._stopped.is_set():
            reasons.append("stopping")
        dead = [t.name for t in [*self._workers, self.outbox._thread] if not t.is_alive()]
        if dead and not self._stopped.is_set():
            reasons.append(f"stopped: {', '.join(dead)}")
        if stall := self.stalled():
            reasons.append(stall)
        if reasons:
            out["reason"] = "; ".join(reasons)
        return out

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
            "site_calibration": self.identity.site_calibration,
            "threshold": self.threshold,
            "jobs": self.journal.counts(),
            "quarantined": self.journal.count_quarantined(),
            "isolation": self.config.scoring.isolation,
            "workers": [
                {
                    "alive": bool(s.alive),
                    "pid": s.info.get("pid"),
                    "starts": getattr(s, "starts", 1),
                }
                for s in self.scorers
            ],
            "scoring_queue": self._queue.qsize(),
            "destinations": self.outbox.snapshot(),
            "received": self.metrics.count("received_total"),
            "refused": self.metrics.count("refused_total"),
            "uptime_s": round(time.time() - self.started_at, 1),
            "recent": recent,
            "watch": self.watch.status() if self.watch is not None else None,
            "shadow": self.shadow.status() if self.shadow is not None else None,
        }


_DECISION: dict[Any, str] = {True: "fresh", False: "not fresh"}


def _identity(bundle: Any, artifact: Any) -> Any:
    from edgevcf.serve.sr import ModelIdentity

    m = bundle.manifest
    return ModelIdentity(
        model_id=bundle.id,
        backbone=str(m.get("backbone", "unknown")),
        precision=str(m.get("precision", "unknown")),
        runtime=artifact.runtime,
        signer_key_id=bundle.signer_key_id,
        site_calibration=bundle.site_calibration,
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


__all__ = ["Addresses", "Service"]
