"""The embeddable runtime: ``Predictor.from_bundle(path).predict(image)``.

What a cart vendor embeds. It needs numpy, pydicom/Pillow (reading) and the one inference engine
the bundle's artefact uses — never torch or a converter. Loading verifies the bundle (schema,
every file's sha256, the manifest's own checksum), so a tampered or half-copied bundle is
refused before it scores anyone.

Threads: one Predictor may be shared by many threads. :meth:`Predictor.predict`,
:meth:`~Predictor.predict_many`, :meth:`~Predictor.assess`, :meth:`~Predictor.prepare`,
:meth:`~Predictor.logits` and :meth:`~Predictor.warm` are safe from several threads at once:
reading and preprocessing are pure functions of their input, the quality gate only reads its
fitted state, and each engine keeps per-thread state (OpenVINO infer requests, LiteRT
interpreters) or is thread-safe itself (an ONNX Runtime session). Each thread's *first*
inference runs alone in the process (:meth:`edgevcf.backends.base.Backend.warm`): OpenVINO's
Python bindings were seen to deadlock when two threads made their first inference at once.
A server should call :meth:`~Predictor.warm` on each scoring thread before it takes work.
Constructing a Predictor is not shared work: build it on one thread, then share it.

Before a score is given, the input quality gate (:mod:`edgevcf.quality`) decides whether the
image is in scope — a lateral thoracolumbar radiograph like those the model was trained on. An
image that is not gets ``status="not_assessable"``, ``assessable=False``, the reason, and no
probability or decision. Bundles exported before the gate existed have no learned check: their
predictions say so (``quality["learned"]`` is False and the reason notes it).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.backends import RUNTIMES, backend_class, runnable
from edgevcf.bundle import Artifact, Bundle
from edgevcf.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    DataError,
    EdgeVCFError,
)
from edgevcf.metrics import sigmoid
from edgevcf.quality import GATE_FILE, Assessment, QualityGate, assess_rules

if TYPE_CHECKING:
    from edgevcf.data.io import ImageMeta
    from edgevcf.signing import Trust

log = logging.getLogger(__name__)


#: Said on every scored prediction of a bundle that has no learned quality gate.
NO_LEARNED_GATE = (
    "scored after header/image rules only: this bundle has no learned quality gate "
    "(exported before edgevcf had one; re-export to add it)"
)


@dataclass
class Prediction:
    """One image's result. ``decision`` is None when the image got no score.

    ``status``: ``ok``; ``not_assessable`` (read, but not a lateral thoracolumbar radiograph of
    adequate quality: the quality gate refused it); ``refused`` (unreadable input); ``error``
    (the engine failed on it). ``assessable`` is False for the first two kinds of refusal;
    ``quality`` holds the gate's verdict (:class:`edgevcf.quality.Assessment` as a dict).
    """

    source: str
    probability: float | None
    decision: bool | None
    threshold: float
    model_id: str
    status: str = "ok"  # ok | not_assessable | refused (input) | error (engine failed on it)
    reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    assessable: bool = True
    quality: dict[str, Any] = field(default_factory=dict)
    signer_key_id: str | None = None  # who signed the bundle, when checked (--trust); else None
    site_calibration: str | None = None  # the site calibration the bundle carries, if any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


#: One film read by :meth:`Examiner.check_many`: (graph input, verdict, timings), or why not.
Checked = tuple[np.ndarray, Assessment, dict[str, float]] | EdgeVCFError


@dataclass
class Examined:
    """What one film came to in :meth:`Predictor.run_checked`: the runtime's status (``ok``,
    ``not_assessable``, ``refused``, ``error``), the reason where there is no score, the logit
    where the engine ran, the gate's verdict where the film was read."""

    status: str
    reason: str = ""
    logit: float | None = None
    verdict: Assessment | None = None
    timings: dict[str, float] = field(default_factory=dict)


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_TUNED: list[bool] = []


def keep_freed_memory() -> bool:
    """Let this process reuse the memory of one film for the next (glibc only; once).

    glibc serves every allocation over its mmap threshold (128 KB, rising to at most 32 MB) with
    fresh pages and hands them back when freed, so each film's 10-40 MB of pixel buffers is
    page-faulted and zeroed again: measured ~10 ms of a 17-20 ms read of a 5-megapixel DICOM
    on a 2-core VM. Raising the mmap and trim thresholds keeps freed blocks in the heap for
    the next film (the process's memory stays at its peak, as a cart reading film after film
    has anyway). ``EDGEVCF_MALLOC_TUNING=0`` leaves the allocator as it is. Returns whether the
    allocator was tuned.
    """
    if _MALLOC_TUNED:
        return _MALLOC_TUNED[0]
    tuned = False
    if os.environ.get("EDGEVCF_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None)
            mallopt = getattr(libc, "mallopt", None)  # absent from musl
            if mallopt is not None and (
                mallopt(_M_MMAP_THRESHOLD, 256 << 20) and mallopt(_M_TRIM_THRESHOLD, 512 << 20)
            ):
                tuned = True
        except OSError:
            pass
    _MALLOC_TUNED.append(tuned)
    return tuned


def choose_artifact(bundle: Bundle, backend: str = "auto") -> Artifact:
    """The artefact to run: the bundle's default if its engine is here, else another one.

    ``backend`` names a runtime (``onnxruntime``, ``openvino``, ``litert``, ``tensorrt``) or an
    artefact of the bundle (``model``, ``ort``, ``tflite``, ``engine``); ``auto`` prefers the
    default artefact.

    Raises:
        BackendUnavailableError: no artefact of the bundle can run on this machine.
        ConfigError: ``backend`` names neither a runtime nor an artefact of the bundle.
    """
    arts = bundle.artifacts
    default = bundle.artifact()
    if backend in arts:
        return arts[backend]
    if backend == "auto":
        order = [default, *[a for a in arts.values() if a.name != default.name]]
    elif backend in RUNTIMES:
        order = [a for a in arts.values() if a.runtime == backend]
        if not order:
            raise ConfigError(
                f"the bundle has no {backend} artefact",
                hint="its artefacts: "
                + ", ".join(f"{a.name} ({a.runtime})" for a in arts.values()),
            )
    else:
        raise ConfigError(
            f"unknown backend {backend!r}",
            hint=f"use auto, one of {', '.join(RUNTIMES)}, or an artefact: {', '.join(arts)}",
        )
    for art in order:
        if runnable(art.runtime):
            return art
    from edgevcf.deps import DEPENDENCIES

    need = order[0].runtime
    raise BackendUnavailableError(
        f"no engine for this bundle is installed here (it needs {need})",
        hint=DEPENDENCIES[need].hint,
    )


class Examiner:
    """A verified bundle's reading, preprocessing and quality gate — everything but the engine.

    What a Ray read task holds (:mod:`edgevcf.scale`): it turns films into graph inputs and
    verdicts where no engine is loaded, and :class:`Predictor` (which is an Examiner) scores
    them, so both sides read a film exactly alike.
    """

    def __init__(self, bundle: Bundle) -> None:
        keep_freed_memory()
        self.bundle = bundle
        self.spec = bundle.preprocess
        self.input = bundle.input
        self.threshold = bundle.threshold
        self.model_id = bundle.id
        self.gate = load_gate(bundle)

    # ------------------------------------------------------------ prediction
    def _read(
        self, image: str | os.PathLike[str] | np.ndarray
    ) -> tuple[np.ndarray, ImageMeta | None]:
        """The image as a 2-D float32 array, and its header facts when read from a file (as the
        bundle's preprocessing version reads it: :meth:`Preprocess.read`)."""
        if isinstance(image, np.ndarray):
            img = np.asarray(image, dtype=np.float32)
            if img.ndim != 2:
                raise DataError(
                    f"expected a 2-D greyscale image, got shape {img.shape}",
                    hint="pass a single-channel radiograph (H, W)",
                )
            return img, None
        return self.spec.read(image)

    def prepare(self, image: str | os.PathLike[str] | np.ndarray) -> tuple[np.ndarray, float]:
        """Read (if a path) and preprocess one image into the graph's input; ms spent.

        No quality check: this is the model's input as it is (see :meth:`assess`).
        """
        t0 = time.perf_counter()
        img, _ = self._read(image)
        x = self.input.prepare(self.spec.to_unit(img), self.spec)
        return x, (time.perf_counter() - t0) * 1e3

    def _check(
        self, image: str | os.PathLike[str] | np.ndarray
    ) -> tuple[np.ndarray, Assessment, dict[str, float]]:
        """Read, preprocess and assess one image: (graph input, verdict, timings)."""
        t0 = time.perf_counter()
        img, meta = self._read(image)
        unit = self.spec.to_unit(img)
        x = self.input.prepare(unit, self.spec)
        t1 = time.perf_counter()
        verdict = self._assess(img, meta, unit)
        t2 = time.perf_counter()
        return x, verdict, {"preprocess_ms": (t1 - t0) * 1e3, "quality_ms": (t2 - t1) * 1e3}

    def examine(self, image: str | os.PathLike[str] | np.ndarray) -> tuple[np.ndarray, Assessment]:
        """The graph input of one image *and* the quality gate's verdict, from one read: what a
        site validation needs to score every film and still count what the gate refuses.

        Raises:
            DataError: the image is unreadable.
        """
        x, verdict, _ = self._check(image)
        return x, verdict

    def _assess(self, img: np.ndarray, meta: ImageMeta | None, unit: np.ndarray) -> Assessment:
        if self.gate is None:
            return assess_rules(img, meta)
        return self.gate.assess(img, meta, unit=unit)

    def assess(self, image: str | os.PathLike[str] | np.ndarray) -> Assessment:
        """Whether ``image`` is in scope for this model (the quality gate alone, no score).

        Raises:
            DataError: the image is unreadable.
        """
        return self._check(image)[1]

    def check_many(
        self, items: Sequence[str | os.PathLike[str] | np.ndarray], workers: int | None = None
    ) -> list[Checked]:
        """Read, preprocess and assess each image (``workers`` threads, default one per core:
        decoding and resizing release the GIL); an unreadable one gives its error, in place."""

        def check(img: str | os.PathLike[str] | np.ndarray) -> Checked:
            try:
                return self._check(img)
            except EdgeVCFError as exc:
                return exc

        n = min(len(items), workers or os.cpu_count() or 1)
        if n <= 1:
            return [check(img) for img in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n, thread_name_prefix="edgevcf-read") as pool:
            return list(pool.map(check, items))

    def _not_assessable(
        self, source: str, verdict: Assessment, timings: dict[str, float]
    ) -> Prediction:
        return Prediction(
            source,
            None,
            None,
            self.threshold,
            self.model_id,
            "not_assessable",
            verdict.reason,
            timings,
            assessable=False,
            quality=verdict.to_dict(),
        )


class Predictor(Examiner):
    """A verified bundle loaded into one inference engine."""

    def __init__(self, bundle: Bundle, artifact: Artifact, threads: int | None = None) -> None:
        t0 = time.perf_counter()
        super().__init__(bundle)
        self.artifact = artifact
        options = dict(artifact.options)
        if threads is not None:
            options["threads"] = threads
        if artifact.runtime == "openvino" and options.pop("model_cache", False):
            from edgevcf.dataset import cache_root

            options["cache_dir"] = str(cache_root() / "openvino-cache" / self.model_id[:16])
        else:
            options.pop("model_cache", None)
        self.backend = backend_class(artifact.runtime)(bundle.path / artifact.file, **options)
        self.load_ms = (time.perf_counter() - t0) * 1e3

    @classmethod
    def from_bundle(
        cls,
        path: str | os.PathLike[str],
        backend: str = "auto",
        *,
        threads: int | None = None,
        trust: Trust | None = None,
    ) -> Predictor:
        """Verify the bundle at ``path`` (with ``trust``: its signer too, see
        :func:`edgevcf.signing.verify_signature`) and load its artefact for ``backend``."""
        bundle = Bundle.load(path, trust=trust)
        return cls(bundle, choose_artifact(bundle, backend), threads=threads)

    def warm(self) -> float:
        """Create and run the calling thread's engine state once; ms spent.

        Serialised with every other thread's first inference in the process, so scoring threads
        warmed this way never race an engine's first-use set-up.
        """
        t0 = time.perf_counter()
        self.backend.warm(self.input.shape)
        return (time.perf_counter() - t0) * 1e3

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits for graph inputs ``x`` (N, C, S, S)."""
        return self.backend.run_all(x).reshape(-1)

    def _result(
        self, source: str, logit: float, timings: dict[str, float], verdict: Assessment
    ) -> Prediction:
        p = float(sigmoid(np.asarray(logit)))
        return Prediction(
            source,
            p,
            p >= self.threshold,
            self.threshold,
            self.model_id,
            reason="" if verdict.learned else NO_LEARNED_GATE,
            timings_ms=timings,
            quality=verdict.to_dict(),
        )

    def predict(self, image: str | os.PathLike[str] | np.ndarray) -> Prediction:
        """P(fresh fracture) and the decision at the bundle's threshold for one image — or,
        when the quality gate finds it out of scope, ``status="not_assessable"`` and no score.

        Raises:
            DataError: the image is refused (unreadable, colour, multi-frame, ...).
        """
        x, verdict, timings = self._check(image)
        source = "<array>" if isinstance(image, np.ndarray) else str(image)
        if not verdict.assessable:
            return self._signed(self._not_assessable(source, verdict, timings))
        t0 = time.perf_counter()
        logit = self.logits(x)[0]
        timings["inference_ms"] = (time.perf_counter() - t0) * 1e3
        return self._signed(self._result(source, logit, timings, verdict))

    def _signed(self, p: Prediction) -> Prediction:
        """Every result names who signed the model (None: origin not checked)."""
        p.signer_key_id = self.bundle.signer_key_id
        p.site_calibration = self.bundle.site_calibration
        return p

    def run_checked(
        self, checked: Sequence[Checked], batch_size: int = 8, *, gated: bool = True
    ) -> list[Examined]:
        """Score films already read by :meth:`Examiner.check_many`, ``batch_size`` consecutive
        films to one engine call.

        A batch is fixed by the films' positions, not by which of them the gate passed, so a
        film's probability depends only on its own batch: the one-process and the Ray paths
        (:mod:`edgevcf.scale`), which cut the same batches, give the same bits for the same
        engine and thread count. ``gated``: only in-scope films are scored (the cart's way);
        False scores every readable film (site validation re-fits the gate on them). An engine
        failure on a batch is retried film by film; a film it fails on is ``error``.
        """
        out: list[Examined] = []
        for start in range(0, len(checked), max(1, batch_size)):
            group = checked[start : start + max(1, batch_size)]
            res = [
                Examined("refused", c.message) if isinstance(c, EdgeVCFError)
                else Examined("ok" if c[1].assessable else "not_assessable",
                              c[1].reason, verdict=c[1], timings=c[2])
                for c in group
            ]  # fmt: skip
            run = [
                k for k, c in enumerate(group)
                if not isinstance(c, EdgeVCFError) and (c[1].assessable or not gated)
            ]  # fmt: skip
            if not run:
                out.extend(res)
                continue
            try:
                t0 = time.perf_counter()
                z = self.logits(np.concatenate([group[k][0] for k in run]))  # type: ignore[index]
                per = (time.perf_counter() - t0) * 1e3 / len(run)
                for k, v in zip(run, z, strict=True):
                    res[k].logit, res[k].timings["inference_ms"] = float(v), per
            except Exception:  # the engine failed on this batch: find the film, keep going
                for k in run:
                    try:
                        t0 = time.perf_counter()
                        res[k].logit = float(self.logits(group[k][0])[0])  # type: ignore[index]
                        res[k].timings["inference_ms"] = (time.perf_counter() - t0) * 1e3
                    except Exception as exc:
                        log.warning("inference failed on film %d: %s", start + k, exc)
                        res[k].status = "error"
                        res[k].reason = f"inference failed: {type(exc).__name__}: {exc}"[:300]
            out.extend(res)
        return out

    def predict_many(
        self,
        images: Iterable[str | os.PathLike[str] | np.ndarray],
        batch_size: int = 8,
        workers: int | None = None,
    ) -> list[Prediction]:
        """Predict several images, batched; a refused image gets ``status="refused"`` and a reason,
        an out-of-scope one ``status="not_assessable"``, while the others still run (nothing is
        silently dropped).

        ``workers`` threads read, preprocess and assess the images (default: one per core, so a
        batch of films uses every core: decoding and resizing release the GIL); then every
        ``batch_size`` consecutive images go to the engine together (:meth:`run_checked`).
        """
        items = list(images)
        done = self.run_checked(self.check_many(items, workers), batch_size)
        out = []
        for img, e in zip(items, done, strict=True):
            source = "<array>" if isinstance(img, np.ndarray) else str(img)
            if e.status == "ok" and e.verdict is not None and e.logit is not None:
                out.append(self._result(source, e.logit, e.timings, e.verdict))
            elif e.status == "not_assessable" and e.verdict is not None:
                out.append(self._not_assessable(source, e.verdict, e.timings))
            else:
                out.append(Prediction(
                    source, None, None, self.threshold, self.model_id, e.status, e.reason,
                    e.timings, assessable=e.status == "error",
                    quality=e.verdict.to_dict() if e.verdict is not None else {},
                ))  # fmt: skip
        return [self._signed(p) for p in out]


def load_gate(bundle: Bundle) -> QualityGate | None:
    """The bundle's learned quality gate, or None for a bundle exported before gates existed.

    Raises:
        BundleError: the manifest records a gate whose file is missing, unreadable, of another
            feature version, or fitted for another preprocessing than the bundle's.
    """
    record = bundle.manifest.get("quality_gate")
    if not record:
        return None
    path = bundle.path / str(record.get("file", GATE_FILE))
    if not path.is_file():
        raise BundleError(f"bundle {bundle.path} records a quality gate but {path.name} is missing")
    gate = QualityGate.load(path)
    if gate.spec != bundle.manifest["preprocess"]:
        raise BundleError(
            f"{path.name} was fitted for another preprocessing than the bundle's",
            hint="re-export the bundle; never mix files of two bundles",
        )
    return gate


# ------------------------------------------------------------------ verify
@dataclass
class ArtifactCheck:
    """Golden vectors through one artefact on this machine."""

    artifact: str
    runtime: str
    precision: str
    status: str  # pass | fail | skipped
    n: int = 0
    max_abs_logit_diff: float | None = None
    atol: float | None = None
    decision_mismatches: int = 0
    reason: str = ""


@dataclass
class VerifyResult:
    """The on-cart acceptance test's outcome."""

    bundle: str
    model_id: str
    checks: list[ArtifactCheck]
    signer_key_id: str | None = None  # the trusted key that signed it; None: origin not checked
    signature_claimed: str | None = None  # the key id model.sig names (unchecked), if any
    #: A device-built engine (``device/``): the file it was built from, and the device key that
    #: signed it when checked (--trust).
    engine_source: str | None = None
    engine_signer_key_id: str | None = None
    site_calibration: str | None = None

    @property
    def passed(self) -> bool:
        """All runnable artefacts pass and at least one ran."""
        ran = [c for c in self.checks if c.status != "skipped"]
        return bool(ran) and all(c.status == "pass" for c in ran)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "bundle": self.bundle,
            "model_id": self.model_id,
            "passed": self.passed,
            "origin_checked": self.signer_key_id is not None,
            "signer_key_id": self.signer_key_id,
            "engine_source": self.engine_source,
            "engine_signer_key_id": self.engine_signer_key_id,
            "site_calibration": self.site_calibration,
            "checks": [asdict(c) for c in self.checks],
        }


def verify(
    path: str | os.PathLike[str],
    artifacts: Sequence[str] | None = None,
    trust: Trust | None = None,
) -> VerifyResult:
    """Run the bundle's golden vectors through this machine's engines (with ``trust``: after
    checking who signed it).

    Each artefact passes when every logit is within the bundle's tolerance for its precision of
    what the validated runtime computed at export *and* every decision at the bundled threshold
    is identical. Artefacts whose engine is not installed here are skipped (with the reason).
    """
    bundle = Bundle.load(path, trust=trust)
    golden = bundle.golden()
    atol_by_precision: dict[str, float] = bundle.manifest["golden"]["atol_logit"]
    thr = bundle.threshold
    checks = []
    names = list(artifacts) if artifacts else list(bundle.artifacts)
    for name in names:
        art = bundle.artifact(name)
        check = ArtifactCheck(art.name, art.runtime, art.precision, "skipped")
        checks.append(check)
        if not runnable(art.runtime):
            check.reason = f"{art.runtime} is not installed here"
            continue
        if name not in golden.expected:
            check.reason = "no golden outputs recorded for this artefact (built on device?)"
            expected = golden.fp32
        else:
            expected = golden.expected[name]
        pred = Predictor(bundle, art)
        got = pred.backend.run_all(golden.inputs).reshape(-1)
        expected = expected.reshape(-1)
        diff = np.abs(got - expected)
        atol = float(atol_by_precision.get(art.precision, 1e-3))
        mism = int(np.sum((sigmoid(got) >= thr) != (sigmoid(expected) >= thr)))
        check.n = len(diff)
        check.max_abs_logit_diff = float(diff.max()) if len(diff) else 0.0
        check.atol = atol
        check.decision_mismatches = mism
        ok = bool(np.all(np.isfinite(got))) and check.max_abs_logit_diff <= atol and mism == 0
        check.status = "pass" if ok else "fail"
        if not ok:
            check.reason = (
                f"max |logit diff| {check.max_abs_logit_diff:.3g} (tolerance {atol:g}), "
                f"{mism} decision(s) differ"
            )
    from edgevcf.signing import signer_hint

    dev = bundle.device
    return VerifyResult(
        str(bundle.path), bundle.id, checks, bundle.signer_key_id, signer_hint(bundle.path),
        dev.source["file"] if dev else None, dev.signer_key_id if dev else None,
        bundle.site_calibration,
    )  # fmt: skip


__all__ = ["Prediction", "Predictor", "VerifyResult", "choose_artifact", "load_gate", "verify"]
