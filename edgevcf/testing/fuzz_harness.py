"""Run fuzzed inputs through ``edgevcf.data.io.read_image`` as the runtime does; count outcomes.

Goal (issue 7, section 2): no exception other than :class:`~edgevcf.errors.DataError` escapes,
nothing hangs, and no input the reader refuses ever gets a score from
:meth:`Predictor.predict_many` (:func:`score_check`).

Each input runs in a worker process (this module, run with ``-m``) under a per-input time limit
(a hang = the watchdog fires; the worker is killed and restarted) and an address-space limit (a
decompression bomb that tries to allocate gigabytes surfaces as MemoryError, i.e. as a finding,
not as a swapping machine). Inputs that read are also preprocessed (``Preprocess.to_unit`` +
``InputSpec.prepare``) so a "readable" image that breaks preprocessing is a finding too.
"""

from __future__ import annotations

import collections
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevcf.testing.fuzz_corpus import build_seeds
from edgevcf.testing.fuzz_mutators import make_input

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 2048
WORKER_MODULE = "edgevcf.testing.fuzz_harness"


# ============================================================================ one input
_NUM = re.compile(r"(?<![A-Za-z])[-+]?\d[\d.,e+-]*")


def reason_kind(message: str, path: str) -> str:
    """A refusal message without the path and the numbers: groups refusals by cause."""
    text = message.replace(path, "<file>")
    text = re.sub(r"\(.*", "", text)  # details (exception text) in parentheses
    text = _NUM.sub("N", text)
    return " ".join(text.split())[:90]


def check_one(
    path: Path, preprocess: Any | None = None, input_spec: Any | None = None
) -> dict[str, Any]:
    """Read one file as the runtime does; classify what happened.

    Outcomes: ``ok`` (a finite 2-D float32 image that preprocesses), ``refused`` (DataError),
    ``unhandled`` (any other exception, from reading or preprocessing), ``bad_output`` (read
    "succeeded" but the array is not a finite 2-D float32 image of the shape meta states).
    """
    import numpy as np

    from edgevcf.data.io import read_image
    from edgevcf.errors import DataError

    t0 = time.perf_counter()
    rec: dict[str, Any] = {}
    stage = "read"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img, meta = read_image(path)
            problems = []
            if not isinstance(img, np.ndarray) or img.dtype != np.float32 or img.ndim != 2:
                problems.append(f"type {type(img).__name__} {getattr(img, 'dtype', '')}")
            elif img.shape != (meta.rows, meta.cols):
                problems.append(f"shape {img.shape} != meta {(meta.rows, meta.cols)}")
            elif not np.isfinite(img).all():
                problems.append("non-finite values")
            elif meta.source_format in ("dicom", "png") and (img.min() < 0 or img.max() > 1):
                problems.append(f"values outside [0, 1]: {img.min()}..{img.max()}")
            if problems:
                rec.update(outcome="bad_output", error="; ".join(problems))
            else:
                rec.update(outcome="ok", shape=list(img.shape), photometric=meta.photometric)
                if preprocess is not None and input_spec is not None:
                    stage = "preprocess"
                    x = input_spec.prepare(preprocess.to_unit(img), preprocess)
                    if not np.isfinite(x).all():
                        rec.update(outcome="bad_output", error="non-finite preprocessed input")
    except DataError as exc:
        if stage == "read":
            rec.update(outcome="refused", reason=reason_kind(exc.message, str(path)))
        else:  # refused by preprocessing (empty, NaN): counts as a refusal by the runtime
            rec.update(outcome="refused", reason="preprocess: " + reason_kind(exc.message, ""))
    except BaseException as exc:  # the point: anything else is a finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        rec.update(
            outcome="unhandled",
            stage=stage,
            error=f"{type(exc).__name__}: {str(exc)[:300]}",
            where=[f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in tb[-4:]],
        )
    rec["ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return rec


# ============================================================================ worker process
def _worker_main(config_path: str) -> None:
    """Answer ``{"fmt", "i"}`` requests on stdin with one JSON line each on stdout."""
    import resource

    cfg = json.loads(Path(config_path).read_text())
    limit = int(cfg["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    seeds = build_seeds(Path(cfg["work"]))
    from edgevcf.data.preprocess import InputSpec, Preprocess

    pre, spec = Preprocess(input_size=64), InputSpec((1, 3, 64, 64))
    if cfg.get("bundle"):
        from edgevcf.bundle import Bundle

        b = Bundle.load(cfg["bundle"])
        pre, spec = b.preprocess, b.input
    scratch = Path(cfg["scratch"])
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        if "path" in req:  # an unmutated file (the sweep over all of pydicom's test files)
            rec = check_one(Path(req["path"]), pre, spec)
            rec.update(path=req["path"])
            out.write(json.dumps(rec) + "\n")
            out.flush()
            continue
        fmt, i = req["fmt"], int(req["i"])
        s, data, ops = make_input(fmt, i, int(cfg["seed"]), seeds[fmt])
        path = scratch / f"input-{os.getpid()}"
        path.write_bytes(data)
        rec = check_one(path, pre, spec)
        rec.update(i=i, fmt=fmt, seed_name=s.name, origin=s.origin, ops=ops, size=len(data))
        out.write(json.dumps(rec) + "\n")
        out.flush()


class Worker:
    """A worker process with a watchdog: a request that takes too long kills it (a hang)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = -1
        self._warm = False  # has the current process answered once (imports done)?

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", WORKER_MODULE, str(self.config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                bufsize=1, env=env,
            )  # fmt: skip
        self.restarts += 1
        return self.proc

    def ask(self, fmt: str, i: int, timeout: float, path: str | None = None) -> dict[str, Any]:
        """The worker's record for input ``i`` (or file ``path``), or a ``hang`` / ``died``."""
        proc = self.proc if self.proc and self.proc.poll() is None else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        t0 = time.monotonic()
        req = {"path": path} if path else {"fmt": fmt, "i": i}
        try:
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        # the first request after a (re)start also waits for the imports and the seed corpus
        budget = timeout + (0.0 if self._warm else 60.0)
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(budget)
        if ready:
            line = proc.stdout.readline()
            if line:
                self._warm = True
                rec: dict[str, Any] = json.loads(line)
                return rec
            code = proc.wait(timeout=10)
            self._warm = False
            return {"i": i, "fmt": fmt, "outcome": "died", "error": f"worker exit code {code}",
                    "ms": round((time.monotonic() - t0) * 1e3, 1)}  # fmt: skip
        proc.kill()
        proc.wait(timeout=10)
        self._warm = False
        return {"i": i, "fmt": fmt, "outcome": "hang", "error": f"no answer in {timeout:g} s",
                "ms": round((time.monotonic() - t0) * 1e3, 1)}  # fmt: skip

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ============================================================================ campaign
OUTCOMES = ("ok", "refused", "unhandled", "bad_output", "hang", "died")
FAILURES = ("unhandled", "bad_output", "hang", "died")


@dataclass
class FormatResult:
    """Counts for one format."""

    fmt: str
    n: int
    counts: dict[str, int]
    seconds: float
    worker_restarts: int
    by_origin: dict[str, dict[str, int]]
    by_mutator: dict[str, dict[str, int]]
    refusal_reasons: dict[str, int]
    failures: list[dict[str, Any]]
    slowest_ms: float
    scoring: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def clean(self) -> bool:
        """No unhandled exception, wrong output, hang or dead worker; no refused input scored."""
        return not any(self.counts.get(k, 0) for k in FAILURES) and not self.scoring.get(
            "refused_scored", 0
        )


def run_format(
    fmt: str,
    n: int,
    *,
    seed: int = 0,
    work: Path,
    bundle: str | os.PathLike[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    start: int = 0,
    progress_every: int = 0,
) -> FormatResult:
    """Run inputs ``start .. start+n-1`` of ``fmt`` through a watched worker."""
    work.mkdir(parents=True, exist_ok=True)
    build_seeds(work)  # once, here, not in the timed worker start
    shm = Path("/dev/shm")
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-", dir=shm if shm.is_dir() else work))
    config = work / f"worker-{fmt}.json"
    config.write_text(json.dumps({
        "work": str(work), "seed": seed, "memory_mb": memory_mb, "scratch": str(scratch),
        "bundle": str(bundle) if bundle else None,
    }))  # fmt: skip
    worker = Worker(config, work / f"worker-{fmt}.log")
    records = []
    t0 = time.perf_counter()
    try:
        for k, i in enumerate(range(start, start + n)):
            records.append(worker.ask(fmt, i, timeout_s))
            if progress_every and (k + 1) % progress_every == 0:
                c = collections.Counter(r["outcome"] for r in records)
                print(f"  {fmt}: {k + 1}/{n} {dict(c)}", file=sys.stderr, flush=True)
    finally:
        worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - t0
    return summarise(fmt, records, seconds, max(0, worker.restarts))


def sweep_pydicom(
    *, work: Path, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB
) -> dict[str, Any]:
    """Every file pydicom ships for its tests, unmutated (colour, multi-frame, large, broken
    ones included): each must be read or refused with a DataError, never crash or hang."""
    from pydicom.data import get_testdata_files

    work.mkdir(parents=True, exist_ok=True)
    build_seeds(work)
    config = work / "worker-sweep.json"
    config.write_text(json.dumps({"work": str(work), "seed": 0, "memory_mb": memory_mb,
                                  "scratch": str(work), "bundle": None}))  # fmt: skip
    worker = Worker(config, work / "worker-sweep.log")
    files = sorted(f for f in get_testdata_files() if Path(f).is_file())
    t0 = time.perf_counter()
    try:
        recs = [worker.ask("dicom", k, timeout_s, path=f) for k, f in enumerate(files)]
    finally:
        worker.close()
    counts = collections.Counter(r["outcome"] for r in recs)
    return {
        "files": len(files),
        "counts": {k: counts.get(k, 0) for k in OUTCOMES},
        "seconds": round(time.perf_counter() - t0, 1),
        "failures": [
            {**r, "path": Path(r.get("path", "?")).name} for r in recs if r["outcome"] in FAILURES
        ],
    }


def summarise(
    fmt: str, records: list[dict[str, Any]], seconds: float, restarts: int
) -> FormatResult:
    """Counts by outcome, seed origin, mutator; refusal causes; the failures in full."""
    counts = dict.fromkeys(OUTCOMES, 0)
    by_origin: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_mut: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter[str] = collections.Counter()
    for r in records:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        by_origin[r.get("origin", "?")][r["outcome"]] += 1
        for op in {o.split(":", 1)[0] for o in r.get("ops", [])}:
            by_mut[op][r["outcome"]] += 1
        if r["outcome"] == "refused":
            reasons[r["reason"]] += 1
    return FormatResult(
        fmt=fmt,
        n=len(records),
        counts=counts,
        seconds=round(seconds, 1),
        worker_restarts=restarts,
        by_origin={k: dict(v) for k, v in sorted(by_origin.items())},
        by_mutator={k: dict(v) for k, v in sorted(by_mut.items())},
        refusal_reasons=dict(reasons.most_common(25)),
        failures=[r for r in records if r["outcome"] in FAILURES],
        slowest_ms=max((float(r.get("ms", 0)) for r in records), default=0.0),
        records=records,
    )


def score_check(
    res: FormatResult,
    bundle: str | os.PathLike[str],
    *,
    seed: int,
    work: Path,
    refused_sample: int = 1000,
    ok_sample: int = 50,
) -> dict[str, Any]:
    """Inputs the reader refused go through ``Predictor.predict_many``: none may get a score.

    A sample of readable inputs goes along in the same batches (so refusals sit between scored
    images, as on a cart) and must be scored or refused by the runtime, never fail.
    """
    from edgevcf.runtime import Predictor

    seeds = build_seeds(work)[res.fmt]
    refused = [r["i"] for r in res.records if r["outcome"] == "refused"]
    ok = [r["i"] for r in res.records if r["outcome"] == "ok"]

    def spread(xs: list[int], k: int) -> list[int]:
        if len(xs) <= k:
            return xs
        step = len(xs) / k
        return [xs[int(j * step)] for j in range(k)]

    chosen = sorted([(i, "refused") for i in spread(refused, refused_sample)]
                    + [(i, "ok") for i in spread(ok, ok_sample)])  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="score-", dir=work))
    try:
        paths = []
        for i, _ in chosen:
            _, data, _ = make_input(res.fmt, i, seed, seeds)
            p = tmp / f"{res.fmt}-{i}"
            p.write_bytes(data)
            paths.append(p)
        pred = Predictor.from_bundle(bundle)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = pred.predict_many(paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: collections.Counter[str] = collections.Counter()
    bad = []
    for (i, kind), got in zip(chosen, preds, strict=True):
        scored = got.probability is not None or got.decision is not None
        out[f"{kind}_checked"] += 1
        if kind == "refused":
            if scored or got.status != "refused":
                out["refused_scored"] += 1
                bad.append({"i": i, "status": got.status, "probability": got.probability})
        else:
            out[f"ok_{got.status}"] += 1
            if got.status == "error" or (got.status == "ok" and not scored):
                bad.append({"i": i, "status": got.status, "reason": got.reason})
    summary: dict[str, Any] = {"refused_scored": 0, **out, "problems": bad}
    return summary


if __name__ == "__main__":  # the process a Worker starts
    _worker_main(sys.argv[1])
