"""The one latency harness: a live worker process per row, timed in interleaved rounds.

Why this shape:

- every row (a bundle artefact in its engine, or a checkpoint in PyTorch eager, the FP32
  baseline) runs in its own *spawned* process, so engines' thread pools, allocators and peak
  memory do not interfere, cold start is honest (a fresh interpreter loads the row) and peak RSS
  is the row's own;
- the process stays alive and answers requests over a pipe, so the parent can take batch-1
  latency in *interleaved rounds* (:func:`interleaved_latency`: each round times every row, in a
  shuffled order). A slow phase of the machine then hits all rows alike, and the ratios between
  rows, measured side by side, stay honest on a noisy VM; the spread of the per-round medians
  shows the noise that is left.

``edgevcf bench`` and ``benchmarks/bench_reference.py`` both build on it. Only light imports at
module level: spawned workers re-import this module and the cart runs it; torch is imported by
the PyTorch row only.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import multiprocessing as mp
import os
import random
import statistics
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgevcf.bundle import Bundle
    from edgevcf.runtime import Predictor

PathLike = str | os.PathLike[str]


def stats(ms: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, min, mean and count of latency samples (ms): the bench report's form."""
    a = np.asarray(ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "min_ms": float(a.min()),
        "mean_ms": float(a.mean()),
        "n": len(a),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB).

    Linux's ``VmHWM`` belongs to the process image and restarts at exec; ``ru_maxrss`` does not
    (a spawned child inherits its parent's peak — measured: every bundle "used" the 4.2 GB of the
    training demo that spawned it), so it is only the fallback where /proc is absent.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ what a row runs
@dataclass(frozen=True)
class BundleRow:
    """A row that runs a bundle artefact through :class:`edgevcf.runtime.Predictor`.

    ``backend`` is an engine or artefact name as :func:`edgevcf.runtime.choose_artifact` takes
    it; ``options`` override the artefact's own (e.g. OpenVINO ``inference_precision``), so one
    IR can be measured under another compile setting; ``threads`` None = the artefact's.
    """

    bundle: PathLike
    backend: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None


@dataclass(frozen=True)
class TorchRow:
    """The FP32 baseline: a checkpoint in PyTorch eager, fed the ``reference`` bundle's golden
    inputs, preprocessing and input form, so its timings are like for like with the bundles'.

    ``threads`` None or 0 = torch's default.
    """

    checkpoint: PathLike
    reference: PathLike
    threads: int | None = None


Row = BundleRow | TorchRow


def open_predictor(
    bundle: Bundle | PathLike,
    backend: str = "auto",
    *,
    options: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> Predictor:
    """The one way bench opens a bundle, for its latency rows and its accuracy alike, so both
    measure the same artefact in the same engine: :func:`edgevcf.runtime.choose_artifact`
    picks it, ``options`` override its own, and an :class:`edgevcf.runtime.Predictor` loads it
    (a path is loaded as a cart loads it, checksums verified)."""
    from edgevcf.bundle import Bundle
    from edgevcf.runtime import Predictor, choose_artifact

    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    art = choose_artifact(b, backend)
    if options:
        art = replace(art, options={**art.options, **options})
    return Predictor(b, art, threads=threads)


class _BundleModel:
    """A bundle artefact in its engine, loaded as a cart loads it (checksums verified)."""

    def __init__(self, row: BundleRow) -> None:
        self.pred = open_predictor(
            row.bundle, row.backend, options=row.options, threads=row.threads
        )
        bundle, art = self.pred.bundle, self.pred.artifact
        self.spec, self.input = self.pred.spec, self.pred.input
        self.inputs = bundle.golden().inputs
        self.static_batch = self.pred.backend.static_batch
        self.threshold = bundle.threshold
        self.info: dict[str, Any] = {
            "artifact": art.name,
            "runtime": art.runtime,
            "precision": art.precision,
            "options": {k: v for k, v in art.options.items() if k != "threads"},
            "threads": row.threads,
            "versions": type(self.pred.backend).versions(),
            "size_bytes": sum((bundle.path / f).stat().st_size for f in art.files()),
            "load_ms": self.pred.load_ms,
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.pred.backend.run_all(x)

    def batch1_call(self, x1: np.ndarray) -> Callable[[], object]:
        """The engine's own call on one image (no chunking) where the graph takes batch 1."""
        backend = self.pred.backend
        if backend.static_batch in (0, 1):
            return functools.partial(backend.run, x1)
        return functools.partial(backend.run_all, x1)

    def context(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def decide(self, dicom: str) -> str | None:
        """The full :meth:`Predictor.predict` (read, preprocess, quality gate, infer, decide)."""
        r = self.pred.predict(dicom)
        return f"{r.status}: {r.reason}" if r.reason else r.status


_TORCH_RUNTIME = {"eager": "pytorch-eager", "torchscript": "pytorch-torchscript",
                  "pt2": "pytorch-export"}  # fmt: skip


_TORCH_RUNTIME = {"eager": "pytorch-eager", "torchscript": "pytorch-torchscript",
                  "pt2": "pytorch-export"}  # fmt: skip


class _TorchModel:
    """The checkpoint in PyTorch eager FP32 (what a user would otherwise run)."""

    def __init__(self, row: TorchRow) -> None:
        import torch

        from edgevcf.bundle import Bundle
        from edgevcf.intake.reference import load_reference, reference_kind

        if row.threads:
            torch.set_num_threads(row.threads)
        self.torch: Any = torch
        model, meta, _ = load_reference(row.checkpoint)  # a torch reference (ONNX: no row)
        assert model is not None
        self.model = model.eval()
        ref = Bundle.load(row.reference)  # same preprocessing, input form and golden inputs
        self.spec, self.input = ref.preprocess, ref.input
        self.inputs = ref.golden().inputs
        self.static_batch = 0
        self.threshold = meta.threshold
        self.last_decision: bool | None = None
        self.info: dict[str, Any] = {
            "runtime": _TORCH_RUNTIME[reference_kind(meta)],
            "precision": "fp32",
            "threads": row.threads or torch.get_num_threads(),
            "versions": {"torch": torch.__version__},
        }

    def _tensor(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return np.asarray(self.model(self._tensor(x)).numpy()).reshape(len(x), -1)

    def batch1_call(self, x1: np.ndarray) -> Callable[[], object]:
        """The module's forward on a tensor made once (call under :meth:`context`)."""
        return functools.partial(self.model, self._tensor(x1))

    def context(self) -> contextlib.AbstractContextManager[Any]:
        cm: contextlib.AbstractContextManager[Any] = self.torch.inference_mode()
        return cm

    def decide(self, dicom: str) -> str | None:
        """Read, preprocess, infer and threshold (no quality gate: PyTorch has none)."""
        img, _ = self.spec.read(dicom)
        x = self.input.prepare(self.spec.to_unit(img), self.spec)
        self.last_decision = float(self.run(x)[0, 0]) >= self.threshold
        return None


# ------------------------------------------------------------------ the floor under end to end
def pixel_floor(path: PathLike) -> tuple[Callable[[], object], str]:
    """The least any reader must do with this image, as a call to time, and what it does.

    The call reads the file's bytes and makes one pass over its pixels: ``np.frombuffer`` on
    uncompressed DICOM pixel data (located once, here, not in the call), pydicom's decoder
    alone on compressed data, Pillow's on a non-DICOM image; then one numpy reduction. No
    DICOM pipeline, no preprocessing: "read + preprocess" minus this is what the reader and
    preprocessing cost above the disk and one pass of memory bandwidth.
    """
    p = Path(path)
    try:
        import pydicom

        with warnings.catch_warnings():  # pydicom's warnings may quote a header's values (PHI)
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p, force=True)
            elem = ds.get_item(0x7FE00010)  # raw: its file offset is known before it is decoded
            syntax = ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian)
            rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
            signed = int(ds.get("PixelRepresentation", 0))
            samples = int(ds.get("SamplesPerPixel", 1)) * int(ds.get("NumberOfFrames") or 1)
    except Exception:  # not a DICOM (PNG, TIFF, JPEG) or no pixel data: the image decoder
        from PIL import Image

        def decode() -> object:
            with Image.open(io.BytesIO(p.read_bytes())) as im:
                return np.asarray(im).max()

        return decode, "read_bytes + Pillow decode + max"
    count = rows * cols * samples
    offset = getattr(elem, "value_tell", None)  # None once decoded, or without pixel data
    native = not pydicom.uid.UID(str(syntax)).is_compressed and bits in (8, 16, 32)
    if native and offset is not None and getattr(elem, "length", 0) >= count * bits // 8:
        order = ">" if str(syntax) == pydicom.uid.ExplicitVRBigEndian else "<"
        dtype = np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")
        offset = int(offset)

        def frombuffer() -> object:
            return np.frombuffer(p.read_bytes(), dtype, count, offset).max()

        return frombuffer, "read_bytes + np.frombuffer(pixel data) + max"
    from pydicom.pixels import pixel_array

    def decoder() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pixel_array(io.BytesIO(p.read_bytes())).max()

    return decoder, f"read_bytes + pydicom decoder ({pydicom.uid.UID(str(syntax)).name}) + max"


# ------------------------------------------------------------------ the runner (in the worker)
class Runner:
    """One row's model, loaded in the process that times it.

    Construction is the cold start (load, incl. a bundle's checksum verification, -> first
    result). Every method is what a :class:`Worker` can ask of it over the pipe.
    """

    def __init__(self, row: Row) -> None:
        t0 = time.perf_counter()
        self._model = _TorchModel(row) if isinstance(row, TorchRow) else _BundleModel(row)
        self.inputs = self._model.inputs
        self.x1 = np.ascontiguousarray(self.inputs[:1], dtype=np.float32)
        self._model.run(self.x1)
        self.cold_start_ms = (time.perf_counter() - t0) * 1e3
        self.info: dict[str, Any] = {"cold_start_ms": self.cold_start_ms, **self._model.info}
        backend = getattr(getattr(self._model, "pred", None), "backend", None)
        effective = getattr(backend, "effective_precision", None)
        if effective is not None:  # what the engine computes in, once compiled
            self.info["effective_precision"] = effective

    def latency(self, n: int, warmup: int = 0) -> list[float]:
        """``n`` timed batch-1 runs (ms) on a real preprocessed radiograph, after ``warmup``."""
        call = self._model.batch1_call(self.x1)
        out = []
        with self._model.context():
            for _ in range(warmup):
                call()
            for _ in range(n):
                t = time.perf_counter_ns()
                call()
                out.append((time.perf_counter_ns() - t) / 1e6)
        return out

    def throughput(self, batch: int, reps: int) -> dict[str, Any]:
        """Images per second at ``batch`` (the golden inputs, cycled) over ``reps`` timed runs;
        ``batched`` False when a static-batch graph runs it in smaller chunks."""
        xb = np.ascontiguousarray(np.resize(self.inputs, (batch, *self.inputs.shape[1:])))
        self._model.run(xb)  # warm the shape
        t = time.perf_counter()
        for _ in range(reps):
            self._model.run(xb)
        sec = time.perf_counter() - t
        sb = self._model.static_batch
        return {"images_per_s": batch * reps / sec, "batched": not sb or sb >= batch}

    def end_to_end(self, dicom: str, n: int) -> dict[str, Any]:
        """``n`` times: the floor (:func:`pixel_floor`), DICOM read + preprocessing alone, then
        the whole DICOM -> decision, interleaved so a slow phase hits all three alike.

        Returns ms lists ``floor``, ``preprocess`` and ``end_to_end``, ``floor_method`` (what the
        floor did), the distinct prediction ``status`` strings and the film's ``shape``.
        """

        floor_call, floor_method = pixel_floor(dicom)
        floor, prep, e2e, status, shape = [], [], [], set(), []
        for _ in range(n):
            t = time.perf_counter()
            floor_call()
            floor.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            img, meta = self._model.spec.read(dicom)
            self._model.input.prepare(self._model.spec.to_unit(img), self._model.spec)
            prep.append((time.perf_counter() - t) * 1e3)
            shape = [meta.rows, meta.cols]  # the film's stored size (version 2 reads it reduced)
            t = time.perf_counter()
            s = self._model.decide(dicom)
            e2e.append((time.perf_counter() - t) * 1e3)
            if s is not None:
                status.add(s)
        return {
            "floor": floor,
            "floor_method": floor_method,
            "preprocess": prep,
            "end_to_end": e2e,
            "status": sorted(status),
            "shape": shape,
        }

    def probs(self, path: str) -> np.ndarray:
        """P(positive) for graph inputs in a ``.npy`` file, memory-mapped (every worker of a
        table reads the same file, none holds a copy of the whole split)."""
        x = np.load(path, mmap_mode="r")
        z = np.concatenate(
            [
                self._model.run(np.ascontiguousarray(x[i : i + 16])).reshape(-1)
                for i in range(0, len(x), 16)
            ]
        )
        return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


_METHODS = frozenset({"latency", "throughput", "end_to_end", "probs"})


class _RemoteError(Exception):
    """The worker's traceback, chained under the error it raised (as multiprocessing.Pool)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _send_error(conn: Any, exc: BaseException) -> None:
    tb = traceback.format_exc()
    try:
        conn.send(("error", (exc, tb)))
    except Exception:  # the error does not pickle: its text does
        conn.send(("error", (RuntimeError(f"{type(exc).__name__}: {exc}"[:400]), tb)))


def _serve(conn: Any, row: Row) -> None:
    """Worker loop: load, then answer ``(method, args)`` until ``None`` (then peak RSS)."""
    from edgevcf import progress

    progress.set_enabled(False)
    try:
        runner = Runner(row)
    except Exception as exc:  # reported to the parent, which raises it
        _send_error(conn, exc)
        return
    conn.send(("ok", runner.info))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            break
        method, args = msg
        try:
            if method not in _METHODS:
                raise ValueError(f"no such worker method: {method!r}")
            conn.send(("ok", getattr(runner, method)(*args)))
        except Exception as exc:
            _send_error(conn, exc)
    conn.send(("ok", peak_rss_mb()))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars while an in-process runner works (a spawned one has none either)."""
    from edgevcf import progress

    was = progress.enabled()
    progress.set_enabled(False)
    try:
        yield
    finally:
        progress.set_enabled(was)


# ------------------------------------------------------------------ the worker (parent side)
class Worker:
    """Parent-side handle of one row: its :class:`Runner` alive in a spawned process
    (``isolate=False``: here, for tests), answering one request at a time.

    Use as a context manager: leaving it closes the worker, or kills it when an error (or
    SIGTERM) is on its way out, so no worker outlives its parent's run. Errors in the worker are
    raised here, with the worker's traceback chained.
    """

    def __init__(self, label: str, row: Row, *, isolate: bool = True) -> None:
        self.label = label
        self.row = row
        self._rss: float | None = None
        self._runner: Runner | None = None
        self._proc: Any = None
        self._conn: Any = None
        if not isolate:
            with _quiet():
                self._runner = Runner(row)
            self.info: dict[str, Any] = dict(self._runner.info)
            return
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, row), daemon=True)
        self._proc.start()
        child.close()  # so a worker that dies is an EOF here, not a hang
        try:
            self.info = self._reply("load")
        except BaseException:
            self.kill()
            raise

    @property
    def cold_start_ms(self) -> float:
        """Load (incl. checksum verification) -> first result, in the worker."""
        return float(self.info["cold_start_ms"])

    def _reply(self, what: str) -> Any:
        try:
            status, value = self._conn.recv()
        except EOFError:
            self._proc.join(5)
            code = self._proc.exitcode
            raise RuntimeError(f"{self.label}: worker died during {what} (exit {code})") from None
        if status != "ok":
            exc, tb = value
            raise exc from _RemoteError(tb)
        return value

    def _call(self, method: str, *args: Any) -> Any:
        if self._rss is not None or (self._proc is None and self._runner is None):
            raise RuntimeError(f"{self.label}: worker is closed")
        if self._runner is not None:
            with _quiet():
                return getattr(self._runner, method)(*args)
        self._conn.send((method, args))
        return self._reply(method)

    def latency(self, n: int, warmup: int = 0) -> list[float]:
        """``n`` timed batch-1 runs (ms), after ``warmup`` untimed ones."""
        return list(self._call("latency", n, warmup))

    def throughput(self, batch: int, reps: int) -> dict[str, Any]:
        """``{"images_per_s", "batched"}`` at ``batch``."""
        return dict(self._call("throughput", batch, reps))

    def end_to_end(self, dicom: PathLike, n: int) -> dict[str, Any]:
        """See :meth:`Runner.end_to_end`."""
        return dict(self._call("end_to_end", str(dicom), n))

    def probs(self, path: PathLike) -> np.ndarray:
        """See :meth:`Runner.probs`."""
        return np.asarray(self._call("probs", str(path)))

    def close(self) -> float:
        """Stop the worker; its peak RSS (MB). Closing again returns the same value."""
        if self._rss is not None:
            return self._rss
        if self._proc is None:  # in process: this process's peak
            self._runner = None
            self._rss = peak_rss_mb()
            return self._rss
        self._conn.send(None)
        rss = float(self._reply("close"))
        self._proc.join(10)
        self.kill()
        self._rss = rss
        return rss

    def kill(self) -> None:
        """End the worker now (idempotent; a no-op in process)."""
        self._runner = None
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._conn.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.kill()


# ------------------------------------------------------------------ interleaved rounds
@dataclass
class RowSamples:
    """One row's batch-1 latency samples (ms), round by round."""

    rounds: list[list[float]] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        """Every sample, rounds in order."""
        return [v for r in self.rounds for v in r]

    @property
    def round_medians_ms(self) -> list[float]:
        """The median of each round: their spread is the noise between rounds."""
        return [float(statistics.median(r)) for r in self.rounds]


def more_queries(
    done_ms: Sequence[float], queries: int, duration_s: float = 0.0, *, chunk_s: float = 10.0
) -> int:
    """How many more timed batch-1 runs reach both minimums, ``queries`` runs *and*
    ``duration_s`` seconds of timed runs (the sum of ``done_ms``); 0 when both are met.

    Short of the duration, the mean sample so far gives the runs still needed, aimed 5 % past
    the minimum so one more call usually ends it, at most ``chunk_s`` seconds' worth per call
    (a first estimate from a few samples may be off). Pure, so the rule is tested without time.
    """
    n, spent = len(done_ms), float(sum(done_ms)) / 1e3
    if n >= queries and spent >= duration_s:
        return 0
    need = max(queries - n, 0)
    if spent < duration_s:
        if n == 0:
            return max(need, 1)
        mean = max(spent / n, 1e-7)
        by_time = math.ceil((duration_s - spent) * 1.05 / mean)
        need = max(need, min(by_time, max(1, int(chunk_s / mean))))
    return max(need, 1)


def timed_latency(
    worker: Worker, queries: int, duration_s: float = 0.0, warmup: int = 0
) -> list[float]:
    """Batch-1 latency (ms) of one worker until it has ``queries`` runs and ``duration_s``
    seconds of timed runs (see :func:`more_queries`), after ``warmup`` untimed ones."""
    out = worker.latency(queries, warmup)
    while k := more_queries(out, queries, duration_s):
        out += worker.latency(k)
    return out


def interleaved_latency(
    workers: Sequence[Worker],
    rounds: int,
    per_round: int | Mapping[str, int],
    *,
    warmup: int | Mapping[str, int] = 0,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
    min_round_s: float | Mapping[str, float] = 0.0,
) -> dict[str, RowSamples]:
    """Batch-1 latency of every worker in ``rounds`` interleaved rounds, by label.

    Every worker is warmed up first; then each round times ``per_round`` runs of every worker
    (an int, or one per label) and, with ``min_round_s``, at least that many seconds of timed
    runs (so a minimum duration over all rounds is met round by round, every round weighing
    alike), in an order shuffled each round by a ``seed``-ed RNG, so no row is always timed
    first or right after the heaviest one. ``on_round(i)`` is called after round ``i`` (from
    0), e.g. to report progress.
    """
    labels = [w.label for w in workers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"worker labels must be unique: {labels}")

    def count(v: int | Mapping[str, int], label: str) -> int:
        return v if isinstance(v, int) else v[label]

    def seconds(label: str) -> float:
        return float(min_round_s) if isinstance(min_round_s, float | int) else min_round_s[label]

    for w in workers:
        if count(warmup, w.label):
            w.latency(0, count(warmup, w.label))
    by_label = {w.label: w for w in workers}
    return _interleave(
        labels,
        rounds,
        lambda label: timed_latency(by_label[label], count(per_round, label), seconds(label)),
        seed,
        on_round,
    )


def _interleave(
    labels: Sequence[str],
    rounds: int,
    time_round: Callable[[str], list[float]],
    seed: int,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, RowSamples]:
    """The schedule both interleaved timers share: each round times every label once
    (``time_round``), in an order shuffled each round by a ``seed``-ed RNG."""
    out = {label: RowSamples() for label in labels}
    rng = random.Random(seed)
    order = list(labels)
    for r in range(rounds):
        rng.shuffle(order)
        for label in order:
            out[label].rounds.append(time_round(label))
        if on_round is not None:
            on_round(r)
    return out


def interleaved_calls(
    calls: Mapping[str, Callable[[], object]],
    rounds: int,
    per_round: int,
    *,
    warmup: int = 0,
    seed: int = 0,
) -> dict[str, RowSamples]:
    """Latency (ms) of in-process calls in ``rounds`` interleaved rounds of ``per_round`` runs
    each, shuffled by a ``seed``-ed RNG as :func:`interleaved_latency` shuffles its workers: for
    what is not a bundle yet (``--precision auto``'s candidates, timed during the export)."""
    for call in calls.values():
        for _ in range(warmup):
            call()

    def time_round(label: str) -> list[float]:
        call, ms = calls[label], []
        for _ in range(per_round):
            t = time.perf_counter_ns()
            call()
            ms.append((time.perf_counter_ns() - t) / 1e6)
        return ms

    return _interleave(list(calls), rounds, time_round, seed)
