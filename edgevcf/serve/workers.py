"""Scoring workers: where a film is decoded, preprocessed, gated and scored.

The node talks DICOM, keeps the journal and the outbox and answers ``/healthz`` in its own
process; the scoring happens in a **worker process** per scoring slot (``isolation =
"process"``, the default). A native fault in a decoder or an engine — a deadlock that holds the
GIL (seen: OpenVINO's first inference raced by two threads froze a node, SIGTERM ignored), a
crash, a film that decodes forever — then stops one worker, never the node: the supervising
thread in the node gives each film a time limit, kills a worker that overruns it or dies, and
starts a fresh one. ``isolation = "thread"`` scores in threads of the node itself (faster to
start, no per-film limit: what ``edgevcf serve`` did before, kept for measurement).

Each worker loads and verifies the bundle itself (checksums, and the signature under
``[trust]``), runs one warm-up inference before it takes work, and scores one film at a time.
A worker that finds its parent gone exits (the pipe closes; on Linux the kernel also sends it
SIGKILL when the fork server that made it ends, which it does when the node ends), so no scoring
process outlives the node. Workers are forked from a fork server (single-threaded, numpy and
pydicom preloaded) where the platform has one, else spawned: never forked from the node itself,
whose threads may hold locks.

Test-only hooks (``EDGEVCF_TEST_HOOKS=1`` in the node's environment, never on a cart): a film
whose Image Comments read ``edgevcf-test:hang`` makes its worker sleep, ``edgevcf-test:abort``
makes it call :func:`os.abort`, so the tests can show a film that hangs or kills its worker ends
quarantined while the node carries on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgevcf import errors
from edgevcf.errors import EdgeVCFError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from edgevcf.runtime import Predictor

log = logging.getLogger(__name__)

HOOKS_ENV = "EDGEVCF_TEST_HOOKS"
HANG, ABORT = "edgevcf-test:hang", "edgevcf-test:abort"
#: Seconds a worker may take to load and warm the bundle before it is given up on.
START_TIMEOUT_S = 120.0
#: Seconds between two polls of a busy worker (a result is read as soon as it arrives).
POLL_S = 0.05


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to load the bundle on its own (plain values: sent to a new process).

    ``env`` carries the node's ``EDGEVCF_*`` variables as they are when the worker starts (a
    worker forked from the fork server would otherwise see them as they were when that started).
    """

    bundle: str
    backend: str
    threads: int
    trust_keys: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    shadow: str = ""  # a candidate bundle scored on request, after the primary


def edgevcf_env() -> tuple[tuple[str, str], ...]:
    """This process's ``EDGEVCF_*`` variables (cache folder, test hooks, ...)."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("EDGEVCF_")))


#: Modules the fork server imports once, so each worker it forks starts with them loaded (no
#: engine: an engine may start threads at import, and a process with threads must not fork).
PRELOAD = ["numpy", "pydicom", "edgevcf.runtime", "edgevcf.serve.workers"]


def _context() -> Any:
    """Fork-server processes where the platform has them (a worker starts in a fraction of a
    second: the fork server is single-threaded and has numpy and pydicom loaded), else spawn."""
    from edgevcf import processes

    return processes.context(PRELOAD)


class WorkerLostError(Exception):
    """The worker scoring a film overran the time limit or died; it has been replaced."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # timeout | died
        self.reason = reason


class StopRequestedError(Exception):
    """The node is stopping: the film in flight was abandoned (it stays in the journal)."""


def load_predictor(spec: WorkerSpec, shadow: bool = False) -> Predictor:
    """The bundle (or with ``shadow`` the candidate) verified under the same trust rules and
    loaded as ``spec`` says (in a worker, or in the node's threads)."""
    from edgevcf.runtime import Predictor

    trust = None
    if spec.trust_keys:
        from edgevcf.signing import Trust

        trust = Trust.load(list(spec.trust_keys), spec.revoked)
    path = spec.shadow if shadow else spec.bundle
    return Predictor.from_bundle(path, spec.backend, threads=spec.threads, trust=trust)


def score_film(predictor: Predictor, path: str) -> dict[str, Any]:
    """One stored film's result as the journal keeps it: a refusal or an engine failure is a
    result with a reason, never an exception (the reason never names the spool path)."""
    try:
        p = predictor.predict(path)
        return {
            "status": p.status, "probability": p.probability, "decision": p.decision,
            "reason": p.reason if p.status != "ok" else "",
            "gate_score": p.quality.get("score"),  # the drift watch's input distance
            "timings_ms": {k: round(v, 2) for k, v in p.timings_ms.items()},
        }  # fmt: skip
    except EdgeVCFError as exc:
        return {"status": "refused", "probability": None, "decision": None,
                "reason": _no_path(exc.message, path)}  # fmt: skip
    except Exception as exc:  # an engine failure is a result, not a crash
        log.warning("scoring failed: %s", type(exc).__name__)
        return {"status": "error", "probability": None, "decision": None,
                "reason": f"scoring failed ({type(exc).__name__})"}  # fmt: skip


def _no_path(message: str, path: str) -> str:
    """A reader's message without the spool path (the SR and the result log need neither)."""
    return message.replace(f"{path}: ", "").replace(path, "the film")


# ---------------------------------------------------------------- in the worker process
def _die_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when the node that started it ends."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _test_hook(path: str) -> None:
    from pydicom import dcmread

    try:
        comment = str(dcmread(path, stop_before_pixels=True).get("ImageComments", ""))
    except Exception:
        return
    if comment == HANG:
        time.sleep(3600)
    elif comment == ABORT:
        os.abort()


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """A worker process: load + warm, say ready, then score one film per request until told
    to stop (None) or the node is gone."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the node
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # decides when its workers stop
    for k in [k for k in os.environ if k.startswith("EDGEVCF_")]:
        del os.environ[k]
    os.environ.update(dict(spec.env))
    hooks = os.environ.get(HOOKS_ENV) == "1"
    try:
        t0 = time.perf_counter()
        predictor = load_predictor(spec)
        warm_ms = predictor.warm()
        candidate = load_predictor(spec, shadow=True) if spec.shadow else None
        if candidate is not None:
            warm_ms += candidate.warm()
        conn.send(("ready", {"load_ms": round((time.perf_counter() - t0) * 1e3 - warm_ms, 1),
                             "warm_ms": round(warm_ms, 1), "pid": os.getpid()}))  # fmt: skip
    except EdgeVCFError as exc:
        conn.send(("error", type(exc).__name__, exc.message, exc.hint))
        return
    except Exception as exc:  # a bug or an engine that cannot start: said, not hidden
        conn.send(("error", "EdgeVCFError", f"{type(exc).__name__}: {exc}"[:400], None))
        return
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):  # the node is gone
            return
        if path is None:
            return
        which = predictor
        if isinstance(path, tuple):  # ("shadow", path): the candidate's turn
            path, which = path[1], candidate or predictor
        if hooks:
            _test_hook(path)
        conn.send(("result", score_film(which, path)))


# ---------------------------------------------------------------- in the node
class ProcessScorer:
    """One worker process and the pipe to it, owned by one supervising thread of the node."""

    def __init__(self, spec: WorkerSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.proc: BaseProcess | None = None
        self.conn: Connection | None = None
        self.info: dict[str, Any] = {}
        self.starts = 0
        self._abort_at: float | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Start the worker and wait until it has loaded and warmed the bundle.

        Raises:
            EdgeVCFError: the worker could not load the bundle (its own error, re-raised), or
                did not become ready within ``timeout`` seconds.
            StopRequestedError: :meth:`interrupt` was called meanwhile.
        """
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the worker process (it loads the bundle on its own; see :meth:`wait_ready`)."""
        import dataclasses

        self.close(grace=0)
        ctx = _context()  # never a plain fork of the node: it has threads
        parent, child = ctx.Pipe()
        spec = dataclasses.replace(self.spec, env=edgevcf_env())
        proc = ctx.Process(target=worker_main, args=(child, spec), name=self.name,
                           daemon=True)  # fmt: skip
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent
        self.starts += 1

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the launched worker's "ready" (see :meth:`start`)."""
        proc, conn = self.proc, self.conn
        assert proc is not None and conn is not None
        deadline = time.monotonic() + timeout
        while not conn.poll(POLL_S):
            if not proc.is_alive() and not conn.poll(0):
                self.close(grace=0)
                raise EdgeVCFError(
                    f"scoring worker {self.name} exited while loading the bundle "
                    f"({_exit_text(proc.exitcode)})"
                )
            if time.monotonic() > deadline:
                self.close(grace=0)
                raise EdgeVCFError(
                    f"scoring worker {self.name} did not load the bundle in {timeout:.0f} s"
                )
            if self._abort_at is not None:
                self.close(grace=0)
                raise StopRequestedError()
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            self.close(grace=0)
            raise EdgeVCFError(f"scoring worker {self.name} exited while loading") from None
        if msg[0] == "error":
            self.close(grace=0)
            cls = getattr(errors, msg[1], EdgeVCFError)
            if not (isinstance(cls, type) and issubclass(cls, EdgeVCFError)):
                cls = EdgeVCFError
            raise cls(msg[2], hint=msg[3])
        self.info = dict(msg[1])
        return self.info

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def score(self, path: str, timeout: float, shadow: bool = False) -> dict[str, Any]:
        """The worker's result for the film at ``path`` (``shadow``: the candidate's).

        Raises:
            WorkerLostError: no result within ``timeout`` seconds (the worker is killed), or the
                worker died; either way the next call starts a fresh one.
            StopRequestedError: :meth:`interrupt`'s deadline passed first (the worker is killed).
        """
        if not self.alive:
            self.start()
        assert self.conn is not None and self.proc is not None
        t0 = time.monotonic()
        try:
            self.conn.send(("shadow", path) if shadow else path)
            while not self.conn.poll(POLL_S):
                now = time.monotonic()
                if not self.proc.is_alive():
                    break
                if self._abort_at is not None and now >= self._abort_at:
                    self.close(grace=0)
                    raise StopRequestedError()
                if now - t0 > timeout:
                    self.close(grace=0)
                    raise WorkerLostError("timeout", f"scoring did not finish within {timeout:g} s")
            msg = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self.proc.exitcode if self.proc is not None else None
            if self.proc is not None:
                self.proc.join(1)
                code = self.proc.exitcode
            self.close(grace=0)
            raise WorkerLostError("died", f"the scoring worker died ({_exit_text(code)})") from None
        return dict(msg[1])

    def interrupt(self, at: float) -> None:
        """Abandon the film in flight (if any) once ``time.monotonic()`` reaches ``at``."""
        self._abort_at = at

    def close(self, grace: float = 2.0) -> None:
        """Ask the worker to exit; kill it if it has not within ``grace`` seconds."""
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if conn is not None:
            if grace > 0:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(None)
            conn.close()
        if proc is None:
            return
        if grace > 0:
            proc.join(grace)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ThreadScorer:
    """Scoring in a thread of the node (``isolation = "thread"``): one Predictor shared by all
    slots, each slot's engine state warmed on its own thread, one at a time."""

    def __init__(self, predictor: Predictor, candidate: Predictor | None = None) -> None:
        self.predictor = predictor
        self.candidate = candidate
        self.info: dict[str, Any] = {}
        self.alive = True

    def start(self) -> dict[str, Any]:
        warm = self.predictor.warm() + (self.candidate.warm() if self.candidate else 0.0)
        self.info = {"warm_ms": round(warm, 1), "pid": os.getpid(),
                     "thread": threading.current_thread().name}  # fmt: skip
        return self.info

    def score(self, path: str, timeout: float, shadow: bool = False) -> dict[str, Any]:
        return score_film(self.candidate if shadow and self.candidate else self.predictor, path)

    def interrupt(self, at: float) -> None:
        """A thread cannot be abandoned: the film in flight finishes."""

    def close(self, grace: float = 2.0) -> None:
        """Nothing to stop (the node's threads end with it)."""


__all__ = [
    "HOOKS_ENV",
    "ProcessScorer",
    "StopRequestedError",
    "ThreadScorer",
    "WorkerLostError",
    "WorkerSpec",
    "load_predictor",
    "score_film",
    "worker_main",
]
